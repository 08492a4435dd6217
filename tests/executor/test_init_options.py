"""Ray's ``init`` arguments beyond sluice's own: address="auto", log_to_driver, logging,
the dashboard's (none starts) and _system_config's spilling directory."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice.executor import context

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20


@pytest.fixture(autouse=True)
def no_runtime_left() -> None:
    yield
    sluice.shutdown()


def driver_output(source: str) -> str:
    """What a fresh driver running ``source`` writes to stdout and stderr."""
    out = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


PRINTING_DRIVER = """
import sluice
sluice.init(num_cpus=1{options})

@sluice.remote
def shout():
    import sys
    print("task says hello", flush=True)
    print("task warns", file=sys.stderr, flush=True)
    return 1

assert sluice.get(shout.remote()) == 1
print("driver done", flush=True)
"""


def test_log_to_driver_false_keeps_the_workers_output_off_the_driver() -> None:
    shown = driver_output(PRINTING_DRIVER.format(options=""))
    assert "task says hello" in shown and "task warns" in shown
    hidden = driver_output(PRINTING_DRIVER.format(options=", log_to_driver=False"))
    assert "driver done" in hidden
    assert "task says hello" not in hidden and "task warns" not in hidden


def test_logging_level_sets_the_sluice_loggers_level_unless_logging_is_left_alone() -> None:
    logger = logging.getLogger("sluice")
    before = logger.level
    try:
        sluice.init(num_cpus=1, logging_level="DEBUG")
        assert logger.level == logging.DEBUG
        sluice.shutdown()
        sluice.init(num_cpus=1, logging_level=logging.ERROR, configure_logging=False)
        assert logger.level == logging.DEBUG
        sluice.shutdown()
    finally:
        logger.setLevel(before)
    with pytest.raises(ValueError, match="logging_level='LOUD'.*DEBUG, INFO"):
        sluice.init(num_cpus=1, logging_level="LOUD")
    assert not sluice.is_initialized()


def test_a_dashboard_starts_when_asked_and_a_taken_port_leaves_the_runtime_without_one(
        capfd) -> None:
    import urllib.request

    import sluice.dashboard

    sluice.init(num_cpus=1, include_dashboard=True, dashboard_port=0)
    try:
        dashboard = sluice.dashboard.current()
        assert dashboard is not None and dashboard.port != 0
        assert f"view the dashboard at {dashboard.url}" in capfd.readouterr().err
        with urllib.request.urlopen(dashboard.url + "/api/v0/nodes", timeout=30) as response:
            assert b'"node_id":"local"' in response.read()
        taken = dashboard.port
        sluice.shutdown()
        assert sluice.dashboard.current() is None
        with socket.socket() as holder:  # someone else holds the port now
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", taken))
            holder.listen(1)
            sluice.init(num_cpus=1, include_dashboard=True, dashboard_port=taken)
            err = capfd.readouterr().err
            assert f"the dashboard cannot listen on 127.0.0.1:{taken}" in err
            assert "the runtime runs without a dashboard" in err
            assert sluice.dashboard.current() is None
            assert sluice.get(sluice.put(5)) == 5  # the runtime itself runs
    finally:
        sluice.shutdown()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Ray's defaults, or no dashboard asked for: silent
        sluice.init(num_cpus=1, include_dashboard=False, dashboard_host="127.0.0.1")
    assert sluice.dashboard.current() is None


def test_system_config_object_spilling_config_sets_the_spill_directory(tmp_path) -> None:
    spill = tmp_path / "spill"
    config = {"type": "filesystem", "params": {"directory_path": str(spill)}}
    sluice.init(num_cpus=1, object_store_memory=60 * MB,
                _system_config={"object_spilling_config": json.dumps(config)})
    arrays = [np.full(20 * MB // 8, float(i)) for i in range(5)]
    refs = [sluice.put(a) for a in arrays]
    assert context.current().store.num_spilled > 0
    assert os.listdir(spill)
    for ref, arr in zip(refs, arrays):
        np.testing.assert_array_equal(sluice.get(ref), arr)


def test_system_config_keys_sluice_does_not_use_are_named_in_a_warning() -> None:
    with pytest.warns(UserWarning, match="ignores automatic_object_spilling_enabled, max_io_workers"):
        sluice.init(num_cpus=1, _system_config={"max_io_workers": 4,
                                                "automatic_object_spilling_enabled": True})
    sluice.shutdown()
    with pytest.raises(ValueError, match="sluice spills to one folder"):
        sluice.init(num_cpus=1, _system_config={"object_spilling_config": '{"type": "smart_open"}'})


@pytest.fixture
def no_cluster_here(tmp_path, monkeypatch) -> None:
    """No cluster address in the environment, and an empty folder of daemon records."""
    monkeypatch.delenv("SLUICE_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_address_auto_without_a_cluster_says_how_to_get_one(no_cluster_here) -> None:
    with pytest.raises(ConnectionError, match=r"found no sluice cluster: no head started with "
                                              r"`sluice start --head` runs on this machine"):
        sluice.init(address="auto")
    with pytest.raises(ConnectionError, match="found no sluice cluster"):
        sluice.init("auto")  # Ray's first parameter is the address
    assert not sluice.is_initialized()


@pytest.mark.parametrize("var", ["SLUICE_ADDRESS", "RAY_ADDRESS"])
def test_address_auto_connects_where_the_environment_says(no_cluster_here, monkeypatch, var) -> None:
    from sluice.executor.cluster.auth import NoHeadError
    from sluice.executor.cluster.local import free_port

    port = free_port()  # nothing listens there: the error names the address it tried
    monkeypatch.setenv(var, f"127.0.0.1:{port}")
    with pytest.raises(NoHeadError, match=rf"no sluice head answers at sluice://127.0.0.1:{port}"):
        sluice.init(address="auto")
