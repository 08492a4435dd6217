"""Helpers shared by the executor tests: shared-memory files, deadlines, marker files."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sluice.executor import context

REPO_ROOT = Path(__file__).resolve().parents[2]


def current_session() -> str:
    """The session id of the runtime running in this (driver) process."""
    rt = context.current()
    assert rt is not None and rt.is_driver, "no sluice runtime is running in this process"
    return rt.session


def session_files(session: str) -> list[str]:
    """The /dev/shm files of ``session``."""
    return sorted(glob.glob(f"/dev/shm/sluice-{session}-*"))


def segment_file(session: str, object_id: int) -> str:
    """Where the shared-memory segment of ``object_id`` lives (whether or not it exists)."""
    return f"/dev/shm/sluice-{session}-{object_id:x}"


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, poll: Callable[[], object] | None = None,
               interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; ``poll`` runs before each check."""
    deadline = time.monotonic() + timeout
    while True:
        if poll is not None:
            poll()
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def maps_line_of(address: int) -> str:
    """The /proc/self/maps line whose address range holds ``address`` ("" if none)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
            if start <= address < end:
                return line.rstrip("\n")
    return ""


def bump(path: str | Path) -> int:
    """Count one more attempt in the marker file ``path``; returns the new count."""
    path = Path(path)
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def attempts(path: str | Path) -> int:
    """How many times :func:`bump` counted in ``path``."""
    path = Path(path)
    return int(path.read_text()) if path.exists() else 0


def run_driver(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` as a separate driver process that can import sluice."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def backing_file(array) -> str:
    """The file mapped at ``array``'s data, as /proc/self/maps names it ("" for anonymous memory)."""
    fields = maps_line_of(array.__array_interface__["data"][0]).split(None, 5)
    return fields[5].removesuffix(" (deleted)") if len(fields) == 6 else ""


def wait_until_freed(path: str, template, timeout: float = 10.0) -> bool:
    """Whether the shared memory at ``path`` stops holding a live object within ``timeout``.

    A store with one file per object removes the file; a store that recycles its
    segments hands the file to a later ``put`` of the same size instead. Each
    round puts one such probe (which also drives the driver's ref bookkeeping)
    and keeps the probes alive, so a recycled segment can only be ``path``.
    """
    import sluice  # here, not at the top: workers import this module too

    probes = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(path):
            return True
        probe = sluice.put(template.copy())
        probes.append(probe)
        if backing_file(sluice.get(probe)) == path:
            return True
        time.sleep(0.02)
    return False
