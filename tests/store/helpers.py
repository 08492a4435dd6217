"""Helpers shared by the store tests."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from sluice.store.shm import SHM_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]


def session_files(session_id: str) -> list[str]:
    """The /dev/shm files of ``session_id``."""
    return glob.glob(os.path.join(SHM_DIR, f"sluice-{session_id}-*"))


def run_child(code: str) -> str:
    """Run ``code`` in a fresh Python process that can import sluice; return its stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def address_range(buf: object) -> tuple[int, int]:
    """The [start, end) addresses of the memory behind ``buf``."""
    raw = np.frombuffer(buf, dtype=np.uint8)  # type: ignore[call-overload]
    start = int(raw.__array_interface__["data"][0])
    return start, start + raw.nbytes


def data_address(array: np.ndarray) -> int:
    """Where ``array``'s first element lives."""
    return int(array.__array_interface__["data"][0])


def resident_bytes(buf: object) -> int:
    """How many bytes of the mapping behind ``buf`` this process has resident (page
    tables filled), from /proc/self/smaps: the mapping that starts where ``buf`` does."""
    start, _ = address_range(buf)
    found = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and ":" not in head:  # a mapping's header line: start-end perms ...
                found = int(head.split("-")[0], 16) == start
            elif found and head == "Rss:":
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no mapping starts at {start:#x} in /proc/self/smaps")
