"""On a real two-node sluice cluster, a compiled Plan places a stage on the node that holds its
big input: compile asks the backend where the bound objects live (``Backend.nodes()``,
``Backend.object_locations()``), the locality pass picks their node, and the runner asks for
it with a soft node affinity.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from sluice.compiler.ir import OpKind
from sluice.compiler.plan_run import plan_run
from sluice.executor import api
from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.cluster.conftest import LocalCluster, connected_cluster, node_with

BIG = 2_000_000  # int64s: 16 MB, made on the node the test names


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with connected_cluster(nodes=2, node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']]) as c:
        yield c


@sluice.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@sluice.remote
def checksum(a: np.ndarray, scale: int = 1) -> int:
    return int(a.sum()) * scale


@sluice.remote
def checksum_where(a: np.ndarray, scale: int = 1) -> tuple[int, str]:
    """The checksum and the Flight location of the node the task ran on."""
    return int(a.sum()) * scale, os.environ["SLUICE_NODE_FLIGHT"]


@sluice.remote
def flight_location() -> str:
    return os.environ["SLUICE_NODE_FLIGHT"]


@pytest.mark.parametrize("resource", ["n0", "n1"])
def test_the_plan_places_the_reader_on_the_node_holding_its_big_input(
        cluster: LocalCluster, resource: str) -> None:
    big = make.options(resources={resource: 0.01}).remote(BIG)
    small = sluice.put(3)
    assert sluice.wait([big], timeout=60)[0] == [big]
    home = node_with(resource)
    [location] = api.runtime().object_locations([big.id])
    assert location.node_ids == (home,) and location.size is not None and location.size >= BIG * 8

    plan = checksum.bind(big, scale=small).compile()
    (stage,) = [st for st in plan.stages if st.kind is OpKind.CALL]
    assert stage.placement == home
    assert f"@{home} (largest input of 15.3 MiB held there)" in plan.explain()
    assert sluice.get(plan.execute(), timeout=60) == 3 * BIG * (BIG - 1) // 2
    # The task went to the backend asking for that node, softly.
    _, _, options = plan_run(plan, api.runtime()).tasks[stage.id]
    assert options["scheduling_strategy"] == NodeAffinitySchedulingStrategy(home, soft=True)
    # ... and it ran there.
    there = sluice.get(flight_location.options(resources={resource: 0.01}).remote(), timeout=60)
    plan = checksum_where.bind(big, scale=small).compile()
    assert sluice.get(plan.execute(), timeout=60) == (3 * BIG * (BIG - 1) // 2, there)


def test_a_plan_without_bound_objects_asks_nothing_and_stays_local(cluster: LocalCluster) -> None:
    with sluice.InputNode() as inp:
        plan = checksum.bind(make.bind(inp)).compile()
    assert {st.placement for st in plan.stages} == {"local"}
    assert sluice.get(plan.execute(1_000), timeout=60) == 1_000 * 999 // 2
