"""The newcomer's demo (examples/demo.py) runs end to end and cleans up after itself."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "examples" / "demo.py"


def test_the_demo_runs_and_leaves_no_shared_memory_behind() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with subprocess.Popen([sys.executable, str(DEMO)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT) as demo:
        out, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, err
    assert "squares of 0..9 = [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in out
    assert "running totals in call order = [1, 3, 6, 10, 15]" in out
    assert "get returned a read-only" in out
    assert "column sums agree" in out
    assert out.rstrip().endswith("done: workers stopped, shared memory released")
    # A session is named after its driver's pid: nothing of the demo's may remain.
    assert glob.glob(f"/dev/shm/sluice-{demo.pid}-*") == []
    assert glob.glob(os.path.join(tempfile.gettempdir(), f"sluice-spill-{demo.pid}-*")) == []
