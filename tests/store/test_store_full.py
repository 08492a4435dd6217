"""A full store raises Ray's errors: ObjectStoreFullError when /dev/shm has no room,
OutOfDiskError when spilling fails (both still the OSErrors sluice raised before).

Each case runs in a child process with a private mount namespace, where a tiny tmpfs
stands in for the full filesystem (root only; skipped where ``unshare`` cannot do it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_with_tiny_mount(target: str, source: str) -> str:
    """Run ``source`` in a child whose ``target`` is a fresh 1 MB tmpfs; its stdout."""
    script = f"mount -t tmpfs -o size=1m tmpfs {target} && exec {sys.executable} -c \"$0\""
    try:
        out = subprocess.run(["unshare", "-m", "sh", "-c", script, source], cwd=ROOT, text=True,
                             capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if out.returncode != 0 and "mount" in out.stderr and "Traceback" not in out.stderr:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_no_room_in_dev_shm_raises_object_store_full_error() -> None:
    out = run_with_tiny_mount("/dev/shm", """
import errno
from sluice.exceptions import ObjectStoreFullError, RayError
from sluice.store import shm
try:
    shm.create_segment("sluice-storefulltest-1", 4 << 20)
except ObjectStoreFullError as err:
    assert isinstance(err, OSError) and isinstance(err, RayError) and err.errno == errno.ENOSPC
    print(err)
""")
    assert "no room in /dev/shm for segment 'sluice-storefulltest-1' of 4194304 bytes" in out


def test_a_spill_that_finds_no_room_on_disk_raises_out_of_disk_error(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    out = run_with_tiny_mount(str(spill), f"""
import errno
import numpy as np
from sluice.exceptions import OutOfDiskError
from sluice.store.object_store import ObjectStore
from sluice.store.serialization import serialize
from sluice.store.shm import cleanup_session, new_session_id
session = new_session_id()
try:
    with ObjectStore(session, capacity_bytes=3 << 20, spill_dir={str(spill)!r}) as store:
        for i in range(1, 6):  # past the capacity: the oldest spill, and the disk is 1 MB
            store.put(i, serialize(np.full(1 << 20, i, dtype=np.uint8)))
except OutOfDiskError as err:
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    print(err)
finally:
    cleanup_session(session)
""")
    assert "cannot spill object" in out and "free space in the spill directory" in out
