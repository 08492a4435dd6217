"""What ``sluice start/status/stop`` say when no head answers or a port is taken, run
through the real command line: one line that names the address and what to do, never a
traceback; and ``sluice stop --address`` stopping one cluster only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import ROOT, free_port


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """``sluice ARGS`` in a fresh interpreter whose daemons are recorded under ``tmp`` only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    env.pop("SLUICE_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "sluice.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def one_error_line(out: subprocess.CompletedProcess, command: str) -> str:
    """The single line a failed command printed (status 1, nothing else, no traceback)."""
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sluice {command}: error: "), out.stderr
    return lines[0]


@pytest.fixture
def head(tmp_path) -> Iterator[int]:
    """A head (with no node of its own) started by ``sluice start`` under ``tmp_path``; its port."""
    port = free_port()
    up = run_cli(tmp_path, "start", "--head", "--port", str(port), "--num-cpus", "0")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield port
    finally:
        run_cli(tmp_path, "stop")


def test_a_node_joining_where_no_head_answers_names_the_address(tmp_path) -> None:
    port = free_port()
    line = one_error_line(run_cli(tmp_path, "start", "--address", f"127.0.0.1:{port}"), "start")
    assert f"no sluice head answers at 127.0.0.1:{port}" in line
    assert "start one with `sluice start --head` or check the address" in line
    assert not list(tmp_path.glob("sluice-*/daemon-*.json"))  # nothing was started


def test_a_node_joining_a_head_without_its_token_is_told_so(head, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"  # another machine: the head's token file is not there
    elsewhere.mkdir()
    line = one_error_line(run_cli(elsewhere, "start", "--address", f"127.0.0.1:{head}"), "start")
    assert f"the sluice head at 127.0.0.1:{head} wants its token: pass --token" in line


def test_status_after_stop_says_no_head_answers(head, tmp_path) -> None:
    assert run_cli(tmp_path, "status").returncode == 0
    assert "stopped the sluice head" in run_cli(tmp_path, "stop").stdout
    line = one_error_line(run_cli(tmp_path, "status", "--address", f"127.0.0.1:{head}"), "status")
    assert f"no sluice head answers at 127.0.0.1:{head}" in line and "sluice start --head" in line
    # The same from a machine that never had the head's token file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = one_error_line(run_cli(elsewhere, "status", "--address", f"127.0.0.1:{head}"), "status")
    assert f"no sluice head answers at 127.0.0.1:{head}" in line


def test_status_without_an_address_when_no_head_runs_here(tmp_path) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 6380)) == 0:
            pytest.skip("something listens on 127.0.0.1:6380, the default head address")
    line = one_error_line(run_cli(tmp_path, "status"), "status")
    assert ("no sluice head started on this machine is running, and none answers at "
            "127.0.0.1:6380 (the default): start one with `sluice start --head`") in line


def test_a_second_head_on_a_port_in_use_says_so_in_one_line(head, tmp_path) -> None:
    for tmp in (tmp_path, tmp_path / "other-user"):
        tmp.mkdir(exist_ok=True)
        line = one_error_line(run_cli(tmp, "start", "--head", "--port", str(head)), "start")
        assert f"port {head} on 127.0.0.1 is in use" in line and "--port" in line
    # The first head still serves, with its token file untouched.
    st = run_cli(tmp_path, "status", "--address", f"127.0.0.1:{head}")
    assert st.returncode == 0 and "0 live node(s)" in st.stdout, st.stdout + st.stderr


def test_a_head_in_the_foreground_on_a_port_in_use_says_so_in_one_line(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(tmp_path, "start", "--head", "--port", str(port), "--block")
    assert f"port {port} on 127.0.0.1 is in use" in one_error_line(out, "start")
    out = run_cli(tmp_path, "start", "--head", "--port", str(free_port()), "--bind", "192.0.2.1",
                  "--block")  # an address of the documentation range: never this machine's
    assert "--bind 192.0.2.1: not an address of this machine" in one_error_line(out, "start")


def test_stop_with_an_address_stops_that_cluster_only(tmp_path) -> None:
    ports = [free_port(), free_port()]
    try:
        for port in ports:  # each head with a node of its own (a second daemon of its cluster)
            up = run_cli(tmp_path, "start", "--head", "--port", str(port), "--num-cpus", "1")
            assert up.returncode == 0, up.stdout + up.stderr
        down = run_cli(tmp_path, "stop", "--address", f"127.0.0.1:{ports[0]}")
        assert down.returncode == 0, down.stderr
        assert [line.split(" (pid")[0] for line in down.stdout.splitlines()] == [
            "stopped the sluice node", "stopped the sluice head"]
        gone = run_cli(tmp_path, "status", "--address", f"127.0.0.1:{ports[0]}")
        assert "no sluice head answers" in gone.stderr
        kept = run_cli(tmp_path, "status", "--address", f"127.0.0.1:{ports[1]}")
        assert kept.returncode == 0 and "1 live node(s)" in kept.stdout, kept.stdout + kept.stderr
        again = run_cli(tmp_path, "stop", "--address", f"127.0.0.1:{ports[0]}")
        assert again.stdout.startswith(f"no sluice daemons for the head at 127.0.0.1:{ports[0]} ")
    finally:
        rest = run_cli(tmp_path, "stop")
    assert rest.stdout.count("stopped the sluice") == 2


def test_a_driver_is_told_whether_no_head_answers_or_its_token_is_missing(head, monkeypatch,
                                                                          tmp_path) -> None:
    import tempfile

    import sluice
    from sluice.executor.cluster.auth import AuthError, NoHeadError

    monkeypatch.delenv("SLUICE_TOKEN", raising=False)
    driver_tmp = tmp_path / "driver"  # a temp folder of this process's own: no head's token file
    driver_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(driver_tmp))
    nothing = free_port()
    with pytest.raises(NoHeadError, match=rf"no sluice head answers at sluice://127.0.0.1:{nothing} "
                                          r"\(Connection refused\); start one with `sluice start --head`"):
        sluice.init(address=f"sluice://127.0.0.1:{nothing}")
    # The driver's temp folder has no token file for the head (its daemons keep theirs elsewhere).
    with pytest.raises(AuthError, match=rf"no token for the sluice cluster at sluice://127.0.0.1:{head}"):
        sluice.init(address=f"sluice://127.0.0.1:{head}")
    assert not sluice.is_initialized()
