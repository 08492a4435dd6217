"""A loopback cluster through its CLI: start/status/stop, placement by locality,
objects crossing nodes, and the token and TLS guarding every call."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from sluice.executor.cluster.auth import AuthError
from tests.cluster.conftest import (
    ROOT,
    LocalCluster,
    free_port,
    node_info,
    self_signed_cert,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']])
    sluice.init(address=c.address)
    try:
        yield c
    finally:
        sluice.shutdown()
        c.stop()


@sluice.remote
def where() -> dict:
    return node_info()


@sluice.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@sluice.remote
def checksum_at(a: np.ndarray) -> tuple[int, dict]:
    return int(a.sum()), node_info()


@sluice.remote
def hold(started: str, gate: str) -> dict:
    """Where it ran, once the file ``gate`` exists: it holds its CPU until the test opens it
    (it touches ``started`` first)."""
    open(started, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        assert time.monotonic() < deadline, f"the gate {gate} stayed shut for 60 s"
        time.sleep(0.01)
    return node_info()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.01)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sluice.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=90, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_status_lists_every_node_with_its_resources(cluster: LocalCluster) -> None:
    out = run_cli("status", "--address", f"127.0.0.1:{cluster.port}")
    assert out.returncode == 0, out.stderr
    assert "3 live node(s)" in out.stdout
    assert "n0 1/1 free" in out.stdout and "n1 1/1 free" in out.stdout
    assert "task(s) kept" in out.stdout and "of 1.1 GB" in out.stdout  # lineage, default cap
    assert sluice.cluster_resources()["CPU"] == 3.0


def test_a_task_runs_where_most_of_its_input_bytes_are(cluster: LocalCluster) -> None:
    big = make.options(resources={"n1": 0.01}).remote(2_000_000)  # 16 MB, made on node 1
    sluice.wait([big], timeout=30)
    [home] = cluster.locate(big.id)
    _, ran = sluice.get(checksum_at.remote(big))
    # node 1 has 1 CPU free: the reader goes there and reads the segment locally (no copy).
    assert cluster.locate(big.id) == [home]
    assert ran["flight"] == sluice.get(where.options(resources={"n1": 0.01}).remote())["flight"]


def test_a_full_node_spills_work_back_to_another(cluster: LocalCluster, tmp_path) -> None:
    big = make.options(resources={"n1": 0.01}).remote(2_000_000)
    sluice.wait([big], timeout=30)
    [home] = cluster.locate(big.id)
    started, gate = tmp_path / "started", tmp_path / "gate"
    busy = hold.options(resources={"n1": 0.01}, num_cpus=1).remote(str(started), str(gate))
    try:
        wait_for(started.exists, "the task holding node 1's only CPU to start")
        total, ran = sluice.get(checksum_at.remote(big), timeout=60)
    finally:
        gate.touch()
    assert total == sum(range(2_000_000))
    n1 = sluice.get(busy, timeout=60)["flight"]
    assert ran["flight"] != n1
    # It pulled a copy once into the node it ran on: the object now lives on two nodes.
    assert len(cluster.locate(big.id)) == 2 and home in cluster.locate(big.id)


def test_a_large_array_crosses_nodes_intact_and_is_pulled_once_per_node(cluster: LocalCluster) -> None:
    a = make.options(resources={"n0": 0.01}).remote(25_000_000)  # 200 MB on node 0
    sluice.wait([a], timeout=60)
    assert len(cluster.locate(a.id)) == 1
    reads = [checksum_at.options(resources={"n1": 0.01}).remote(a) for _ in range(3)]
    results = sluice.get(reads, timeout=60)
    assert {r[0] for r in results} == {25_000_000 * (25_000_000 - 1) // 2}
    assert len({r[1]["flight"] for r in results}) == 1
    assert len(cluster.locate(a.id)) == 2  # one copy on node 1 however many tasks read it there
    got = sluice.get(a)
    assert got.shape == (25_000_000,) and got[12_345_678] == 12_345_678 and not got.flags.writeable
    del got, a, reads


def test_a_wrong_or_missing_token_is_refused_with_the_cause(cluster: LocalCluster) -> None:
    script = ("import sluice\n"
              "try:\n"
              f"    sluice.init(address={cluster.address!r}, token=TOKEN)\n"
              "except Exception as err:\n"
              "    print(type(err).__name__, err)\n")
    wrong = subprocess.run([sys.executable, "-c", script.replace("TOKEN", "'not-the-token'")], cwd=ROOT,
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "AuthError" in wrong.stdout and "does not match this cluster's" in wrong.stdout
    out = run_cli("status", "--address", f"127.0.0.1:{cluster.port}", "--token", "nope")
    assert out.returncode == 1 and "does not match" in out.stderr
    # Without a token and without the head's token file (another user's machine): refused up front.
    from sluice.executor.cluster.client import ClusterClient

    with pytest.raises(AuthError, match="no sluice cluster token was sent"):
        ClusterClient(cluster.address, "")


def test_start_status_stop_in_the_background(tmp_path) -> None:
    # Its own temp folder: `sluice stop` stops every daemon recorded there, and no others.
    port = free_port()
    env = {"TMPDIR": str(tmp_path)}
    up = run_cli("start", "--head", "--port", str(port), "--num-cpus", "1", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"sluice head serving at sluice://127.0.0.1:{port}" in up.stdout
    try:
        token_file = up.stdout.split("token:")[1].split()[0]
        assert oct(os.stat(token_file).st_mode & 0o777) == "0o600"
        joined = run_cli("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", env=env)
        assert joined.returncode == 0 and "joined" in joined.stdout, joined.stdout + joined.stderr
        st = run_cli("status", env=env)  # finds the head this machine started, and its token
        assert "2 live node(s)" in st.stdout, st.stdout + st.stderr
    finally:
        down = run_cli("stop", env=env)
    assert down.returncode == 0 and down.stdout.count("stopped the sluice") >= 2
    after = run_cli("status", "--address", f"127.0.0.1:{port}", env=env)
    assert after.returncode == 1 and "no sluice head answers" in after.stderr


def test_a_tls_cluster_runs_work_and_refuses_plaintext(tmp_path) -> None:
    self_signed_cert(tmp_path)
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    c = LocalCluster(nodes=1, extra=["--tls-cert", cert, "--tls-key", key],
                     env={"SLUICE_TLS_ROOT": cert})
    try:
        script = ("import sluice, numpy as np\n"
                  f"sluice.init(address={c.address!r})\n"
                  "@sluice.remote\n"
                  "def f(a):\n"
                  "    return int(a.sum())\n"
                  "print(sluice.get([f.remote(np.ones(2_000_000)) for _ in range(4)]))\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SLUICE_TLS_ROOT": cert}
        ok = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=90, env=env)
        assert ok.stdout.strip() == "[2000000, 2000000, 2000000, 2000000]", ok.stderr[-2000:]
        env.pop("SLUICE_TLS_ROOT")
        plain = run_cli("status", "--address", f"127.0.0.1:{c.port}", env={"SLUICE_TLS_ROOT": ""})
        assert plain.returncode == 1
    finally:
        c.stop()


def test_init_refuses_resources_when_joining_a_cluster() -> None:
    with pytest.raises(ValueError, match=r"init\(num_cpus=...\) together with address=.*sluice start"):
        sluice.init(address="sluice://127.0.0.1:1", num_cpus=2)
    with pytest.raises(ValueError, match=r"init\(num_gpus, resources=...\) together with backend=dask"):
        sluice.init(backend="dask", num_gpus=1, resources={"x": 1})


class Triple:
    """A callable class for an actor pool."""

    def __init__(self) -> None:
        self.factor = 3

    def __call__(self, batch: dict) -> dict:
        return {"x": batch["id"] * self.factor}


@sluice.remote
def one() -> int:
    return 1


@sluice.remote
def add(a: int, b: int) -> int:
    return a + b


def test_data_and_workflow_run_on_a_cluster_unchanged(cluster: LocalCluster, tmp_path) -> None:
    import sluice.data as sd
    from sluice import workflow

    ds = sd.range(100_000).repartition(8).map_batches(lambda b: {"id": b["id"], "k": b["id"] % 7})
    got = ds.groupby("k").sum("id").to_pandas().sort_values("k")
    ids = np.arange(100_000)
    assert got["sum(id)"].tolist() == [int(ids[ids % 7 == k].sum()) for k in range(7)]
    assert sd.range(1000).map_batches(Triple, concurrency=2).sum("x") == 3 * sum(range(1000))
    sd.range(10_000).write_parquet(str(tmp_path / "out"))
    assert sd.read_parquet(str(tmp_path / "out")).sum("id") == sum(range(10_000))
    dag = add.bind(one.bind(), one.bind())
    assert workflow.run(dag, workflow_id="on-a-cluster", storage=str(tmp_path / "wf")) == 2
    assert workflow.get_status("on-a-cluster", storage=str(tmp_path / "wf")) == "SUCCESSFUL"


@pytest.mark.parametrize("args, message", [
    (["--head", "--port", "99999"], "--port 99999: give a TCP port from 1 to 65535"),
    (["--head", "--num-cpus", "-1"], "--num-cpus -1: give a number >= 0"),
    (["--head", "--resources", '{"CPU": 4}'], "set CPU with --num-cpus, not in --resources"),
    (["--head", "--resources", '{"ssd": -1}'], "give a JSON object of numbers >= 0"),
    (["--head", "--resources", "ssd=1"], "give a JSON object"),
    (["--head", "--object-store-memory", "0"], "--object-store-memory 0: give a positive"),
    (["--head", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
     "--tls-cert /nonexistent.pem: cannot read it"),
    (["--head", "--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"),
    (["--head", "--max-lineage-bytes", "0"], "--max-lineage-bytes 0: give a positive number"),
    (["--address", "127.0.0.1:1", "--max-lineage-bytes", "9"], "give it to `sluice start --head`"),
])
def test_start_refuses_bad_input_before_starting_anything(tmp_path, args, message) -> None:
    out = run_cli("start", *args, "--block", env={"TMPDIR": str(tmp_path)})
    assert out.returncode == 1 and message in out.stderr, out.stdout + out.stderr
    assert not list(tmp_path.glob("sluice-*/daemon-*.json"))  # no daemon was started


def test_start_refuses_a_bad_max_lineage_bytes_from_the_environment(tmp_path) -> None:
    out = run_cli("start", "--head", "--block",
                  env={"TMPDIR": str(tmp_path), "SLUICE_MAX_LINEAGE_BYTES": "1GB"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "SLUICE_MAX_LINEAGE_BYTES='1GB': give a positive number of bytes" in out.stderr


@sluice.remote
def _stream(n: int):
    yield from range(n)


def test_a_streaming_generator_streams_to_a_cluster_driver(cluster: LocalCluster) -> None:
    assert [sluice.get(ref) for ref in _stream.remote(3)] == [0, 1, 2]  # more: test_generators.py
    assert sluice.get(_stream.options(num_returns=3).remote(3)) == [0, 1, 2]
