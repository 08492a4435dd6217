"""Placement on the dask backend: a Plan's stage runs on the worker holding its big input,
and a ``scheduling_strategy`` node affinity (the user's or the Plan's) reaches Dask as
``workers=[address]`` with ``allow_other_workers=soft``.

One LocalCluster of two worker processes serves the module; each test starts and stops
its own sluice runtime on it. Node ids are worker addresses (``DaskRuntime.nodes()``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from sluice.compiler.ir import OpKind
from sluice.compiler.plan_run import plan_run
from sluice.executor import api
from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy

distributed = pytest.importorskip("distributed")  # the [dask] extra

BIG = 2_000_000  # float64s: 16 MB, far past what any other input weighs


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  resources={"CPU": 1}, dashboard_address=":0") as c:
        yield c


@pytest.fixture
def workers(cluster: distributed.LocalCluster) -> Iterator[list[str]]:
    """The node ids of the two workers, with a sluice runtime on the cluster meanwhile."""
    sluice.init(backend="dask", address=cluster.scheduler_address)
    try:
        node_ids = sorted(n.node_id for n in api.runtime().nodes())
        assert len(node_ids) == 2 and all(n.startswith("tcp://") for n in node_ids)
        yield node_ids
    finally:
        sluice.shutdown()


@sluice.remote
def ran_at(*inputs: object) -> str:
    """The address of the Dask worker this task ran on."""
    return distributed.get_worker().address


@sluice.remote
class Resident:
    def __init__(self) -> None:
        self.address = distributed.get_worker().address  # the constructor runs as a Dask task

    def where(self) -> str:
        return self.address


def holder_of(ref: sluice.ObjectRef) -> str:
    """The one worker holding ``ref``'s value, as the backend reports it."""
    [location] = api.runtime().object_locations([ref.id])
    assert len(location.node_ids) == 1 and location.size is not None and location.size >= BIG * 8
    return location.node_ids[0]


def test_a_plan_runs_its_stage_on_the_worker_holding_its_largest_input(workers: list[str]) -> None:
    big = sluice.put(np.zeros(BIG))
    small = sluice.put(np.ones(1_000))
    home = holder_of(big)
    plan = ran_at.bind(small, big).compile()
    (stage,) = [st for st in plan.stages if st.kind is OpKind.CALL]
    assert stage.placement == home
    assert f"@{home} (largest input of 15.3 MiB held there)" in plan.explain()
    assert sluice.get(plan.execute(), timeout=60) == home
    # The runner asked Dask for that worker, softly.
    _, _, options = plan_run(plan, api.runtime()).tasks[stage.id]
    assert options["scheduling_strategy"] == NodeAffinitySchedulingStrategy(home, soft=True)


def test_the_users_affinity_wins_over_where_the_data_is(workers: list[str]) -> None:
    big = sluice.put(np.zeros(BIG))
    other = next(w for w in workers if w != holder_of(big))
    chosen = ran_at.options(scheduling_strategy=NodeAffinitySchedulingStrategy(other, soft=False))
    plan = chosen.bind(big).compile()
    assert f"@{other} (the scheduling_strategy given names it)" in plan.explain()
    # Dask alone would run a reader where its only input lives; the affinity moves it.
    assert sluice.get(plan.execute(), timeout=60) == other
    assert sluice.get(chosen.remote(big), timeout=60) == other


def test_an_actor_starts_on_the_worker_its_affinity_names(workers: list[str]) -> None:
    for node_id in workers:
        actor = Resident.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
        assert sluice.get(actor.where.remote(), timeout=60) == node_id


def test_a_hard_affinity_naming_no_live_worker_fails_at_once(workers: list[str]) -> None:
    gone = NodeAffinitySchedulingStrategy("tcp://127.0.0.1:9", soft=False)
    with pytest.raises(ValueError, match=r"^task ran_at: NodeAffinitySchedulingStrategy"
                                         r"\(node_id='tcp://127.0.0.1:9', soft=False\) names no "
                                         r"live Dask worker; give one of tcp://"):
        ran_at.options(scheduling_strategy=gone).remote()
    with pytest.raises(ValueError, match=r"^actor Resident: .* names no live Dask worker"):
        Resident.options(scheduling_strategy=gone).remote()


def test_a_soft_affinity_naming_no_live_worker_runs_elsewhere(workers: list[str]) -> None:
    gone = NodeAffinitySchedulingStrategy("tcp://127.0.0.1:9", soft=True)
    assert sluice.get(ran_at.options(scheduling_strategy=gone).remote(), timeout=60) in workers


def test_placement_groups_are_refused_naming_what_dask_cannot_do(workers) -> None:
    from sluice.exceptions import UnsupportedOnBackendError
    from sluice.util import placement_group
    from sluice.util.placement_group import PlacementGroup
    from sluice.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    with pytest.raises(UnsupportedOnBackendError, match="the dask backend has no placement groups: "
                                                        "Dask cannot reserve resources"):
        placement_group([{"CPU": 1}])
    in_group = PlacementGroupSchedulingStrategy(PlacementGroup("ab12", [{"CPU": 1.0}]))
    with pytest.raises(UnsupportedOnBackendError, match="task ran_at: the dask backend has no placement"):
        ran_at.options(scheduling_strategy=in_group).remote()
    spread = sluice.get([ran_at.options(scheduling_strategy="SPREAD").remote() for _ in range(4)],
                        timeout=60)
    assert set(spread) <= set(workers)
