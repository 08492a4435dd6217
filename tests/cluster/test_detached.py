"""On a cluster: detached named actors outlive their driver, namespaces separate drivers,
and the runtime context names the job, node and worker as ``sluice.nodes()`` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import sluice
import sluice.util
from tests.cluster.conftest import ROOT, LocalCluster
from tests.executor.helpers import wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, cpus=1)
    try:
        yield c
    finally:
        sluice.shutdown()
        c.stop()


@sluice.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def context(self) -> dict:
        c = sluice.get_runtime_context()
        return {"job": c.get_job_id(), "actor": c.get_actor_id(), "node": c.get_node_id()}


@sluice.remote
def where() -> dict:
    c = sluice.get_runtime_context()
    return {"job": c.get_job_id(), "node": c.get_node_id(), "task": c.get_task_id(),
            "worker": c.get_worker_id(), "namespace": c.namespace}


FIRST_DRIVER = """
import json, sluice
from tests.cluster.test_detached import Counter
sluice.init(address={address!r}, namespace="svc")
kept = Counter.options(name="kept", lifetime="detached").remote()
temp = Counter.options(name="temp").remote()
print(json.dumps({{"kept": sluice.get([kept.incr.remote(), kept.incr.remote()]),
                   "temp": sluice.get(temp.incr.remote()),
                   "job": sluice.get_runtime_context().get_job_id(),
                   "actor": sluice.get(kept.context.remote())["actor"]}}))
"""


def run_driver(cluster: LocalCluster, script: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script.format(address=cluster.address)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def temp_is_gone() -> bool:
    try:
        sluice.get_actor("temp")
    except ValueError:
        return True
    return False


def test_a_detached_actor_outlives_its_driver_and_a_plain_one_does_not(cluster: LocalCluster) -> None:
    first = run_driver(cluster, FIRST_DRIVER)  # it exits: its session ends with it
    assert first["kept"] == [1, 2] and first["temp"] == 1
    sluice.init(address=cluster.address, namespace="svc")
    try:
        assert sluice.get_runtime_context().get_job_id() != first["job"]
        kept = sluice.get_actor("kept")
        assert sluice.get(kept.incr.remote()) == 3  # the same actor, its state intact
        assert sluice.get(kept.context.remote())["actor"] == first["actor"]
        assert wait_until(temp_is_gone, timeout=60), "the exited driver's plain actor still lives"
        again = Counter.options(name="kept", get_if_exists=True).remote()
        assert sluice.get(again.incr.remote()) == 4
        sluice.kill(kept)
        assert wait_until(lambda: "kept" not in sluice.util.list_named_actors(), timeout=60)
    finally:
        sluice.shutdown()


def test_namespaces_keep_drivers_names_apart(cluster: LocalCluster) -> None:
    sluice.init(address=cluster.address, namespace="one")
    try:
        Counter.options(name="only-in-one", lifetime="detached").remote()
        assert sluice.get(sluice.get_actor("only-in-one").incr.remote()) == 1
    finally:
        sluice.shutdown()
    sluice.init(address=cluster.address)  # an anonymous namespace: it sees none of "one"
    try:
        with pytest.raises(ValueError, match="no actor named 'only-in-one'"):
            sluice.get_actor("only-in-one")
        found = sluice.get_actor("only-in-one", namespace="one")
        assert sluice.get(found.incr.remote()) == 2
        sluice.kill(found)
    finally:
        sluice.shutdown()


def test_runtime_context_on_a_cluster_matches_the_nodes(cluster: LocalCluster) -> None:
    sluice.init(address=cluster.address, namespace="ctx")
    try:
        node_ids = {n["NodeID"] for n in sluice.nodes() if n["Alive"]}
        driver = sluice.get_runtime_context()
        assert driver.get_node_id() in node_ids and driver.get_task_id() is None
        assert driver.namespace == "ctx"
        seen = sluice.get([where.remote() for _ in range(12)])
        for ctx in seen:
            assert ctx["job"] == driver.get_job_id() and ctx["namespace"] == "ctx"
            assert ctx["node"] in node_ids and ctx["task"] is not None
            assert ctx["worker"] != driver.get_worker_id()
        assert len({ctx["task"] for ctx in seen}) == len(seen)
        a = Counter.remote()
        actor_ctx = sluice.get(a.context.remote())
        assert actor_ctx["job"] == driver.get_job_id() and actor_ctx["node"] in node_ids
        assert actor_ctx["actor"] is not None
    finally:
        sluice.shutdown()
