"""Tests of the ``sluice`` command line."""

from __future__ import annotations

import os
import subprocess
import sys

from sluice import __version__, cli


def test_version(capsys) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_cleanup_removes_segments_of_dead_drivers(capsys) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = f"/dev/shm/sluice-{dead.stdout.strip()}-deadbeef-1"
    with open(path, "wb") as f:
        f.write(b"left behind")
    assert cli.main(["cleanup"]) == 0
    assert "removed" in capsys.readouterr().out
    assert not os.path.exists(path)
