"""``sluice.init(address="auto")`` finds the head ``sluice start --head`` runs on this machine."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator

import pytest

import sluice
from sluice.executor import context
from tests.cluster.conftest import free_port
from tests.cluster.test_cli_messages import run_cli


@pytest.fixture
def head_with_a_node(tmp_path) -> Iterator[int]:
    """A head and its node (1 CPU) started by ``sluice start`` under ``tmp_path``; its port."""
    port = free_port()
    up = run_cli(tmp_path, "start", "--head", "--port", str(port), "--num-cpus", "1")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield port
    finally:
        run_cli(tmp_path, "stop")


@sluice.remote
def square(x: int) -> int:
    return x * x


def test_address_auto_connects_to_the_head_started_on_this_machine(head_with_a_node, tmp_path,
                                                                    monkeypatch) -> None:
    for var in ("SLUICE_ADDRESS", "RAY_ADDRESS", "SLUICE_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where that head's record is
    deadline = time.monotonic() + 60
    while True:  # its node joins the head shortly after `sluice start` returns
        try:
            sluice.init(address="auto")
            break
        except ConnectionError as err:
            assert "no live node" in str(err) and time.monotonic() < deadline, err
            time.sleep(0.2)
    try:
        client = context.current()
        assert type(client).__name__ == "ClusterClient"
        assert client.address == f"sluice://127.0.0.1:{head_with_a_node}"
        assert sluice.get(square.remote(7)) == 49
    finally:
        sluice.shutdown()
