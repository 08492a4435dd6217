"""Ray programs run unchanged on sluice: the compatibility suite.

Each ``programs/NAME.py`` is a short program in the style of Ray's documentation,
written against Ray's API; its only change from what a Ray user runs is
``import sluice as ray`` (and ``from sluice... import`` for ``from ray... import``).
Its header names the Ray docs page and its expected output, one ``# | `` line each;
the program asserts the rest itself. Each runs in a fresh interpreter, as a user's
script would, and must exit 0 printing exactly its expected output. The selected
programs start together, a few at a time (they mostly wait on their workers), and each
test reads its own program's result.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180  # generous: a program takes about a second; this only stops a hang
PARALLEL = 3  # programs running at once


def _programs() -> list[Path]:
    return sorted(PROGRAMS.glob("*.py"))


def expected_output(source: str) -> str:
    """The ``# | `` lines of the header, joined as the program's stdout."""
    lines = [line[4:] if line.startswith("# | ") else "" for line in source.splitlines()
             if line.startswith("# |")]
    return "".join(line + "\n" for line in lines)


def test_there_are_at_least_30_programs() -> None:
    assert len(_programs()) >= 30, [p.name for p in _programs()]


@pytest.mark.parametrize("path", _programs(), ids=lambda p: p.stem)
def test_program_is_ray_source_but_for_its_imports(path: Path) -> None:
    """Swapping ``sluice`` back for ``ray`` in its import lines gives a Ray program:
    no other line names sluice, and the header names a Ray docs page."""
    source = path.read_text()
    assert re.search(r"https://docs\.ray\.io/\S+", source), f"{path.name}: no Ray docs link"
    assert "# Expected output:" in source, f"{path.name}: no expected output in its header"
    for number, line in enumerate(source.splitlines(), 1):
        if "sluice" in line and not line.startswith("#"):
            assert re.fullmatch(r"import sluice as ray|from sluice(\.\w+)* import .+", line), (
                f"{path.name}:{number} names sluice outside an import line: {line!r}")


def run_program(path: Path) -> subprocess.CompletedProcess:
    """Run one program as a user would: a fresh interpreter, in an empty directory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    workdir = tempfile.mkdtemp(prefix=f"compat-{path.stem}-")
    try:
        return subprocess.run([sys.executable, str(path)], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> Iterator[dict[Path, Future]]:
    """Every selected program, started PARALLEL at a time when the first test asks."""
    selected = [item.callspec.params["path"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_program_prints_its_documented_output"]
    pool = ThreadPoolExecutor(PARALLEL)
    try:
        yield {path: pool.submit(run_program, path) for path in selected}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("path", _programs(), ids=lambda p: p.stem)
def test_program_prints_its_documented_output(path: Path, runs: dict[Path, Future]) -> None:
    done = runs[path].result() if path in runs else run_program(path)
    assert done.returncode == 0, f"{path.name} exited {done.returncode}:\n{done.stderr[-4000:]}"
    assert done.stdout == expected_output(path.read_text()), done.stderr[-4000:]
