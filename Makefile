# Each target sets itself up: a fresh clone needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@command -v dot >/dev/null 2>&1 || { echo "installing graphviz (dot) for plan drawings"; \
	  (apt-get install -y -q graphviz >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q graphviz >/dev/null)) || \
	  echo "warning: could not install graphviz; plan rendering tests will fail"; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,data]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/core.py
	$(PY) benchmarks/graphs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
