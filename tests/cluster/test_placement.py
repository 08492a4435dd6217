"""Scheduling strategies on a real loopback cluster (the head's ClusterPlacement).

Nodes 0 and 1 carry the custom resources ``n0`` and ``n1``: a task asking for a sliver of
one of them can run only there, which tells each node's Flight location (its workers'
``SLUICE_NODE_FLIGHT``) apart; a pinned task proves where it ran by the location it reports.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from sluice.exceptions import UnschedulableError
from sluice.executor import api
from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity
from tests.cluster.conftest import LocalCluster, connected_cluster, node_info, node_with

DEADLINE_S = 60
NODE_ARGS = [["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']]


@sluice.remote
def where() -> dict:
    return node_info()


@sluice.remote
def make(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.int64)


@sluice.remote
def total_at(a: np.ndarray) -> tuple[int, dict]:
    return int(a.sum()), node_info()


@sluice.remote
class Where:
    def where(self) -> dict:
        return node_info()


def flight_of(resource: str) -> str:
    """The Flight location of the node with ``resource``: where a task needing it ran."""
    return sluice.get(where.options(resources={resource: 0.01}).remote(), timeout=DEADLINE_S)["flight"]


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with connected_cluster(nodes=2, node_args=NODE_ARGS) as c:  # per test: one kills a node
        yield c


def test_a_task_and_an_actor_pinned_hard_run_on_the_named_node(cluster) -> None:
    for resource in ("n1", "n0"):
        pin = Affinity(node_with(resource), soft=False)
        ran = sluice.get([where.options(scheduling_strategy=pin).remote() for _ in range(4)],
                         timeout=DEADLINE_S)
        assert {r["flight"] for r in ran} == {flight_of(resource)}
        actor = Where.options(scheduling_strategy=pin).remote()
        assert sluice.get(actor.where.remote(), timeout=DEADLINE_S)["flight"] == flight_of(resource)
        sluice.kill(actor)


def test_a_soft_pin_wins_over_locality(cluster) -> None:
    # 8 MB made on node 0; without a pin its reader would go where the bytes are.
    block = make.options(resources={"n0": 0.01}).remote(1 << 20)
    pin = Affinity(node_with("n1"), soft=True)
    total, ran = sluice.get(total_at.options(scheduling_strategy=pin).remote(block), timeout=DEADLINE_S)
    assert total == 1 << 20 and ran["flight"] == flight_of("n1")


def test_hard_affinity_to_an_unknown_node_fails_at_get_naming_it_and_the_live_nodes(cluster) -> None:
    live = sorted(n.node_id for n in api.runtime().nodes() if n.alive)
    ref = where.options(scheduling_strategy=Affinity("99", soft=False)).remote()
    listed = ", ".join(repr(n) for n in live)
    with pytest.raises(UnschedulableError, match=rf"task where: .*names node '99', which is not a node "
                                                 rf"of this cluster \(live nodes: {listed}\)"):
        sluice.get(ref, timeout=DEADLINE_S)
    actor = Where.options(scheduling_strategy=Affinity("99", soft=False)).remote()
    with pytest.raises(ValueError, match=r"actor Where: .*names node '99'"):
        sluice.get(actor.where.remote(), timeout=DEADLINE_S)


def test_affinity_to_a_dead_node_runs_elsewhere_when_soft_and_fails_when_hard(cluster) -> None:
    victim, dead_flight = node_with("n0"), flight_of("n0")
    cluster.nodes[0].send_signal(signal.SIGKILL)
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "node 0 declared dead")
    soft = sluice.get(where.options(scheduling_strategy=Affinity(victim, soft=True)).remote(),
                      timeout=DEADLINE_S)
    assert soft["flight"] not in (None, dead_flight)
    hard = where.options(scheduling_strategy=Affinity(victim, soft=False)).remote()
    with pytest.raises(UnschedulableError, match=rf"names node '{victim}', which has died"):
        sluice.get(hard, timeout=DEADLINE_S)
    actor = Where.options(scheduling_strategy=Affinity(victim, soft=True)).remote()
    assert sluice.get(actor.where.remote(), timeout=DEADLINE_S)["flight"] != dead_flight
