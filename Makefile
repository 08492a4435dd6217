# Each target sets itself up: a fresh clone needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test test-loaded bench proto clean

$(STAMP): pyproject.toml
	@command -v dot >/dev/null 2>&1 || { echo "installing graphviz (dot) for plan drawings"; \
	  (apt-get install -y -q graphviz >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q graphviz >/dev/null)) || \
	  echo "warning: could not install graphviz; plan rendering tests will fail"; }
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing chromium and chromium-driver for the dashboard's browser tests"; \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null)) || \
	  echo "warning: could not install chromium; the dashboard's browser tests will fail"; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# PyTorch pinned first (the CPU build of 2.13.0 where the machine has it on disk): the
	# `train` extra's plain torch requirement would otherwise pull a CUDA build of several GB.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,data,dask,serve,tune,train,dashboard]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# The tests and the doctests of every sluice module (pyproject adds --doctest-modules).
test: $(STAMP)
	$(PY) -m pytest -q tests sluice

# `make test` with two CPU-bound processes running beside it: the suite must hold on a busy
# machine. The burners are killed however the tests end (pass, fail, Ctrl-C); the status is the tests'.
# A burner also stops by itself once its shell is gone (even killed with SIGKILL).
BURN := $(PYTHON) -c 'import itertools, os; p = os.getppid(); any(os.getppid() != p for _ in itertools.count())'
test-loaded: $(STAMP)
	@$(BURN) & b1=$$!; $(BURN) & b2=$$!; \
	trap 'kill $$b1 $$b2 2>/dev/null' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM HUP; \
	echo "test-loaded: two CPU burners running (pids $$b1 $$b2)"; \
	$(MAKE) --no-print-directory test

# Ray, Dask and matplotlib come only with the benchmarks (their own stamp: `make test` never pulls Ray).
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,data,dask,serve,tune,train,dashboard,bench]'
	touch $(BENCH_STAMP)

# sluice vs Ray vs Dask (and one pyarrow process for etl), side by side, then a 2 GB Parquet scan
# under a 500 MB store, the cluster rows, the serving rows (sluice.serve vs Ray Serve vs bare uvicorn)
# the tuning rows (sluice.tune vs Ray Tune) and the training rows (sluice.train vs Ray Train vs
# torch.distributed): about 45 minutes on 2 cores; writes benchmarks/results/latest.*,
# scan-memory.json, cluster.json, serve.json, tune.json, train.json
bench: $(BENCH_STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.scan_memory
	$(PY) -m benchmarks.cluster
	$(PY) -m benchmarks.serve
	$(PY) -m benchmarks.tune
	$(PY) -m benchmarks.train

# Regenerate the cluster's gRPC modules from sluice/executor/cluster/cluster.proto (committed).
proto: $(STAMP)
	cd sluice/executor/cluster && ../../../$(PY) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. cluster.proto
	sed -i 's/^import cluster_pb2 as cluster__pb2/from sluice.executor.cluster import cluster_pb2 as cluster__pb2/' sluice/executor/cluster/cluster_pb2_grpc.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
