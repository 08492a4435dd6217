"""Placement groups and scheduling strategies on a 3-node loopback cluster
(sluice/executor/placement_groups.py over sluice/executor/cluster/placement.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import UnschedulableError
from sluice.executor import api
from sluice.util import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from sluice.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup
from tests.cluster.conftest import LocalCluster, connected_cluster, node_info

DEADLINE_S = 60
NODE_ARGS = [["--resources", f'{{"n{i}": 1}}'] for i in range(3)]


@sluice.remote(num_cpus=0.5)
def where() -> dict:
    return node_info()


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with connected_cluster(nodes=3, head_cpus=0, cpus=2, node_args=NODE_ARGS) as c:  # per test: one kills a node
        yield c


def nodes_of(pg) -> list[str]:
    return [placement_group_table(pg)["bundles_to_node_id"][i] for i in range(pg.bundle_count)]


def flights_in(pg) -> list[str]:
    """Where one task per bundle of ``pg`` ran."""
    refs = [where.options(scheduling_strategy=InGroup(pg, i)).remote() for i in range(pg.bundle_count)]
    return [r["flight"] for r in sluice.get(refs, timeout=DEADLINE_S)]


def test_strict_spread_uses_distinct_nodes_and_strict_pack_one(cluster) -> None:
    spread = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert spread.wait(DEADLINE_S)
    assert len(set(nodes_of(spread))) == 3
    assert len(set(flights_in(spread))) == 3
    packed = placement_group([{"CPU": 0.5}] * 2, strategy="STRICT_PACK")
    assert packed.wait(DEADLINE_S)
    assert len(set(nodes_of(packed))) == 1
    assert len(set(flights_in(packed))) == 1


def test_spread_tasks_reach_every_node(cluster) -> None:
    ran = sluice.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(6)],
                     timeout=DEADLINE_S)
    assert len({r["flight"] for r in ran}) == 3


def test_infeasible_fails_ready_and_a_pending_group_fits_once_another_is_removed(cluster) -> None:
    too_many = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
    with pytest.raises(UnschedulableError, match=r"STRICT_SPREAD puts each of its 4 bundles on its own "
                                                 r"node, but there are 3 live node"):
        sluice.get(too_many.ready(), timeout=DEADLINE_S)
    too_big = placement_group([{"CPU": 3}])
    with pytest.raises(UnschedulableError, match=r"bundle 0 \{'CPU': 3.0\} fits on no node; the largest "
                                                 r"node '\d+' has \{'CPU': 2.0"):
        sluice.get(too_big.ready(), timeout=DEADLINE_S)
    whole = placement_group([{"CPU": 2}] * 3, strategy="SPREAD")
    assert whole.wait(DEADLINE_S)
    waiting = placement_group([{"CPU": 2}])
    assert waiting.wait(0.5) is False
    remove_placement_group(whole)
    assert waiting.wait(DEADLINE_S)


def test_a_killed_node_moves_its_bundle_to_a_node_with_room_or_fails_the_group(cluster) -> None:
    spread = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")
    assert spread.wait(DEADLINE_S)
    strict3 = placement_group([{"CPU": 0.5}] * 3, strategy="STRICT_SPREAD")
    assert strict3.wait(DEADLINE_S)
    victim = nodes_of(spread)[0]
    [info] = [n for n in api.runtime().nodes() if n.node_id == victim]
    [index] = [i for i in range(3) if f"n{i}" in info.resources]
    cluster.nodes[index].send_signal(signal.SIGKILL)
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 2, DEADLINE_S, "the node declared dead")
    # spread's bundle 0 moved to the third node (distinct from bundle 1's): its tasks run.
    moved = nodes_of(spread)
    assert victim not in moved and len(set(moved)) == 2
    assert len(set(flights_in(spread))) == 2
    # strict3 needs three nodes; two are left: it fails, naming the node.
    assert placement_group_table(strict3)["state"] == "FAILED"
    with pytest.raises(UnschedulableError, match=rf"node '{victim}' died with bundle"):
        sluice.get(strict3.ready(), timeout=DEADLINE_S)


def test_a_drivers_groups_go_with_it_unless_detached(cluster) -> None:
    mine = placement_group([{"CPU": 2}], name="mine")
    kept = placement_group([{"CPU": 2}], name="kept", lifetime="detached")
    assert kept.wait(DEADLINE_S) and mine.wait(DEADLINE_S)
    sluice.shutdown()
    sluice.init(address=cluster.address)
    deadline = time.monotonic() + DEADLINE_S  # the head notices the disconnection on its own time
    while placement_group_table(mine)["state"] != "REMOVED":
        assert time.monotonic() < deadline, "the first driver's group was not removed"
        time.sleep(0.05)
    assert get_placement_group("kept") == kept and placement_group_table(kept)["state"] == "CREATED"
    with pytest.raises(ValueError, match="no placement group named 'mine'"):
        get_placement_group("mine")
