"""Faults on a real loopback cluster: node daemons killed or frozen mid-job, crashed
workers, lost objects, and drivers that vanish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice.exceptions import ObjectLostError
from sluice.executor.cluster.head import DEAD_AFTER_S
from tests.cluster.conftest import ROOT, LocalCluster, node_info

DEADLINE_S = 60
"""How long a test waits for what the cluster does in seconds (a node declared dead, pools
refilled): generous, so a busy machine never fails it."""


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    # Custom resources let a test place work on node 0 or node 1 on purpose.
    c = LocalCluster(nodes=2, node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']])
    sluice.init(address=c.address)
    try:
        yield c
    finally:
        sluice.shutdown()
        c.stop()


@sluice.remote(max_retries=3)
def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


@sluice.remote
def make_block(n: int, seed: int) -> np.ndarray:
    time.sleep(0.2)  # long enough that blocks made together spread over the nodes
    return np.full(n, seed, dtype=np.int64)


@sluice.remote
def block_sum(block: np.ndarray) -> int:
    return int(block.sum())


@sluice.remote
def crash() -> None:
    os._exit(3)


@sluice.remote
def meet_all(folder: str, me: int, parties: int) -> int:
    """Say ``me`` arrived (a file in ``folder``) and wait for all ``parties``: they all return
    only if each holds a CPU at the same time."""
    Path(folder, str(me)).touch()
    deadline = time.monotonic() + DEADLINE_S
    while len(os.listdir(folder)) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(os.listdir(folder))} of {parties} tasks met in {DEADLINE_S} s")
        time.sleep(0.01)
    return me


def node_pid_of(c: LocalCluster, flight: str) -> subprocess.Popen:
    """The node daemon process whose store serves at ``flight``."""
    for proc, log in zip(c.nodes, c.logs[1:]):
        if flight in log.read_text():
            return proc
    raise AssertionError(f"no node daemon serves {flight}")


def test_a_job_survives_a_node_killed_mid_job(cluster: LocalCluster) -> None:
    refs = [slow_square.remote(i, 0.3) for i in range(24)]
    # Kill node 0 while it runs some of the job's tasks (its status says so).
    victim_id = next(n.node_id for n in cluster.status().nodes if '"n0"' in n.total_json)
    cluster.wait_until(lambda st: any(n.node_id == victim_id and n.tasks_running for n in st.nodes),
                       DEADLINE_S, "node 0 running tasks")
    cluster.nodes[0].send_signal(signal.SIGKILL)
    assert sluice.get(refs, timeout=60) == [i * i for i in range(24)]
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "node declared dead")


def test_a_frozen_node_is_declared_dead_by_missed_heartbeats(cluster: LocalCluster) -> None:
    victim = cluster.nodes[0]
    victim.send_signal(signal.SIGSTOP)  # its connection stays open: only heartbeats stop
    try:
        cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S,
                           "frozen node declared dead")
        [dead] = [n for n in cluster.status().nodes if not n.alive]
        assert dead.seconds_since_heartbeat > DEAD_AFTER_S  # its heartbeats stopped: that is why
        # Work still runs on the other nodes.
        assert sluice.get([slow_square.remote(i, 0.0) for i in range(20)], timeout=30) == \
            [i * i for i in range(20)]
    finally:
        victim.send_signal(signal.SIGCONT)
    # Told it is dead at its next heartbeat, the node leaves for good.
    victim.wait(timeout=DEADLINE_S)


def test_lost_task_output_is_rebuilt_from_lineage(cluster: LocalCluster) -> None:
    n = 1_000_000  # 8 MB: lives in a node's store, not inline
    refs = [make_block.remote(n, i) for i in range(6)]
    sluice.wait(refs, num_returns=len(refs), timeout=30)
    homes = [cluster.locate(r.id) for r in refs]
    nodes = {st.node_id: st for st in cluster.status().nodes}
    victim_id = next(h[0] for h in homes if h and h[0] != min(nodes))  # not the head's node
    victim_flight = None
    for proc, log in zip(cluster.nodes, cluster.logs[1:]):
        if f"sluice node {victim_id} joined" in log.read_text():
            victim_flight = proc
    assert victim_flight is not None
    victim_flight.send_signal(signal.SIGKILL)
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "node declared dead")
    # Every block is still readable, including those whose only copy died: they run again.
    assert sluice.get([block_sum.remote(r) for r in refs], timeout=60) == [n * i for i in range(6)]
    assert all(victim_id not in cluster.locate(r.id) for r in refs)


@sluice.remote
def plus_one(block: np.ndarray) -> np.ndarray:
    return block + 1


def test_a_lost_output_whose_inputs_were_freed_is_rebuilt_through_them(cluster: LocalCluster) -> None:
    # Chains a -> b -> c of 8 MB blocks; each step runs where its input is, so a chain stays on
    # one node. Then a and b are freed, and a node holding a c dies: c is rebuilt by running
    # a, b and c again (Ray's lineage reconstruction), not reported lost.
    n = 1_000_000
    ends, inputs = [], []
    for i in range(6):
        a = make_block.remote(n, i)
        b = plus_one.remote(a)
        ends.append(plus_one.remote(b))
        inputs += [a.id, b.id]
        del a, b
    sluice.wait(ends, num_returns=len(ends), timeout=60)
    assert sluice.get(block_sum.remote(ends[0])) == 2 * n
    assert all(cluster.locate(oid) == [] for oid in inputs)  # a and b are freed everywhere
    head_node = min(st.node_id for st in cluster.status().nodes)
    victim_id = next(h[0] for h in (cluster.locate(r.id) for r in ends) if h and h[0] != head_node)
    victim = next(p for p, log in zip(cluster.nodes, cluster.logs[1:])
                  if f"sluice node {victim_id} joined" in log.read_text())
    victim.send_signal(signal.SIGKILL)
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "node declared dead")
    assert sluice.get([block_sum.remote(r) for r in ends], timeout=60) == [n * (i + 2) for i in range(6)]


def test_a_put_object_on_a_dead_node_raises_object_lost(cluster: LocalCluster) -> None:
    # An object made by put() inside a task on node 0: its only copy is in node 0's store.
    @sluice.remote(resources={"n0": 0.01})
    def put_there() -> list:
        return [sluice.put(np.ones(1_000_000))]

    [ref] = sluice.get(put_there.remote())
    assert sluice.get(ref).sum() == 1_000_000
    cluster.nodes[0].send_signal(signal.SIGKILL)
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "node declared dead")
    with pytest.raises(ObjectLostError, match=f"object {ref.id:x} was lost.*put"):
        sluice.get(ref, timeout=30)


@sluice.remote(max_restarts=1, num_cpus=1)
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def where(self) -> dict:
        return node_info()


def test_an_actor_on_a_dead_node_restarts_on_a_live_one(cluster: LocalCluster) -> None:
    actors = [Counter.remote() for _ in range(2)]  # 1 CPU each: one node keeps a CPU free
    spots = sluice.get([a.where.remote() for a in actors])
    index = next(i for i, s in enumerate(spots)
                 if any(s["flight"] in log.read_text() for log in cluster.logs[1:]))
    actor = actors[index]
    assert sluice.get(actor.incr.remote()) == 1
    node_pid_of(cluster, spots[index]["flight"]).send_signal(signal.SIGKILL)
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "node declared dead")
    # Restarted (state reset, as in Ray) somewhere alive.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            value = sluice.get(actor.incr.remote(), timeout=30)
            break
        except sluice.exceptions.ActorDiedError:  # a call made while it was restarting
            assert time.monotonic() < deadline
    assert value == 1
    assert sluice.get(actor.where.remote())["flight"] != spots[index]["flight"]


def test_a_crashed_worker_is_replaced_and_its_task_retried(cluster: LocalCluster) -> None:
    before = {n.node_id: n.workers for n in cluster.status().nodes}
    with pytest.raises(sluice.exceptions.WorkerCrashedError, match="exit code 3"):
        sluice.get(crash.options(max_retries=1).remote(), timeout=30)
    cluster.wait_until(lambda st: {n.node_id: n.workers for n in st.nodes} == before, DEADLINE_S,
                       "worker pools back to full")


def test_a_driver_that_vanishes_has_its_tasks_and_actors_cleaned_up(cluster: LocalCluster,
                                                                   tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sluice, time
        sluice.init(address={cluster.address!r})
        @sluice.remote
        class Holder:
            def ping(self):
                return 1
        @sluice.remote
        def nap():
            time.sleep(600)
        hs = [Holder.remote() for _ in range(2)]
        assert sluice.get([h.ping.remote() for h in hs]) == [1, 1]
        naps = [nap.remote() for _ in range(10)]  # 3 run, 7 wait in the queue
        sluice.wait(naps, timeout=0.5)
        print("ready", flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == b"ready"
    cluster.wait_until(lambda st: st.actors == 2 and st.tasks_queued == 7, DEADLINE_S,
                       "the driver's work queued")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cluster.wait_until(lambda st: st.actors == 0 and st.drivers == 1 and st.tasks_queued == 0, DEADLINE_S,
                       "the driver's actors and queued tasks cleaned up")
    # The workers running its naps were stopped (and replaced): new work gets every CPU at once
    # (three tasks that meet each hold one, where a nap left running would hold it 10 minutes).
    folder = tmp_path / "met"
    folder.mkdir()
    assert sluice.get([meet_all.remote(str(folder), i, 3) for i in range(3)], timeout=90) == [0, 1, 2]


def test_when_the_head_dies_drivers_get_an_error_and_nodes_leave(cluster: LocalCluster) -> None:
    pending = slow_square.remote(3, 600.0)
    cluster.head.send_signal(signal.SIGKILL)
    # Not a GetTimeoutError: the driver sees the head go, it does not wait out the timeout.
    with pytest.raises(ConnectionError, match="sluice head"):
        sluice.get(pending, timeout=DEADLINE_S)
    for node in cluster.nodes:  # their stream to the head ended: they stop their workers and exit
        assert node.wait(timeout=DEADLINE_S) == 0


@sluice.remote
def fill(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.int64)


def test_kept_lineage_stays_under_max_lineage_bytes_and_a_loss_outside_it_names_the_cap() -> None:
    cap = 64 * 1024
    c = LocalCluster(nodes=1, node_args=[["--resources", '{"n0": 1}']],
                     head_args=["--max-lineage-bytes", str(cap)])
    sluice.init(address=c.address)
    try:
        n = 20_000  # 160 KB: above the inline limit, so each value lives in node 0's store
        on_n0 = {"resources": {"n0": 0.01}}
        x = fill.options(**on_n0).remote(n, 0)
        for _ in range(2_000):  # x = f.remote(x): lineage of ~2,000 tasks, far past the cap
            x = plus_one.options(**on_n0).remote(x)
        assert sluice.wait([x], timeout=120)[0]  # (no copy comes to the driver)
        # Made once the chain is done, so the newest: its lineage is the one the cap keeps.
        young = fill.options(**on_n0).remote(n, 7)
        assert sluice.wait([young], timeout=60)[0]
        st = c.status()
        assert st.max_lineage_bytes == cap
        assert 0 < st.lineage_bytes <= cap and 0 < st.lineage_records <= cap // 512
        c.nodes[0].send_signal(signal.SIGKILL)
        c.wait_until(lambda st: sum(n.alive for n in st.nodes) == 1, DEADLINE_S, "node declared dead")
        with pytest.raises(ObjectLostError, match=f"object {x.id:x} was lost.*evicted.*"
                                                  f"max_lineage_bytes={cap}.*--max-lineage-bytes"):
            sluice.get(x, timeout=30)
        c.add_node(["--resources", '{"n0": 1}'])  # young's task needs n0 to run again
        assert sluice.get(block_sum.remote(young), timeout=60) == 7 * n
        assert c.status().lineage_bytes <= cap
    finally:
        sluice.shutdown()
        c.stop()
