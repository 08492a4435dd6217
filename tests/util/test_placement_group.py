"""Placement groups and scheduling strategies on the local runtime (sluice/util/placement_group.py,
sluice/executor/placement_groups.py, sluice/executor/strategies.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import ActorPlacementGroupRemoved, TaskPlacementGroupRemoved, UnschedulableError
from sluice.executor.placement_groups import assign
from sluice.util import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from sluice.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

DEADLINE_S = 60


@pytest.fixture
def two_cpus() -> Iterator[None]:
    sluice.init(num_cpus=2)
    try:
        yield
    finally:
        sluice.shutdown()


@sluice.remote
def pid() -> int:
    return os.getpid()


@sluice.remote
def sleep_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


@sluice.remote(num_cpus=1)
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


def poll(cond, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@sluice.remote(num_cpus=0.5)
def context_pg() -> str | None:
    return sluice.get_runtime_context().get_placement_group_id()


def test_a_group_reserves_its_bundles_and_runs_its_tasks_and_actors(two_cpus) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="gang")
    assert sluice.get(pg.ready(), timeout=DEADLINE_S) == pg
    assert sluice.available_resources()["CPU"] == 0  # both CPUs are the group's now
    assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0}] and pg.bundle_count == 2
    refs = [pid.options(scheduling_strategy=InGroup(pg, i % 2)).remote() for i in range(6)]
    assert len(sluice.get(refs, timeout=DEADLINE_S)) == 6
    counter = Counter.options(scheduling_strategy=InGroup(pg, 0)).remote()
    assert sluice.get(counter.add.remote(), timeout=DEADLINE_S) == 1
    row = placement_group_table(pg)
    assert row["state"] == "CREATED" and row["strategy"] == "PACK" and row["name"] == "gang"
    assert row["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}
    assert pg.id in placement_group_table() and pg.id.hex() in placement_group_table()
    assert get_placement_group("gang") == pg
    in_group = sluice.get(context_pg.options(scheduling_strategy=InGroup(pg, 1)).remote(),
                          timeout=DEADLINE_S)
    assert in_group == pg.id.hex() and bytes.fromhex(in_group) == pg.id.binary()


def test_a_group_that_does_not_fit_yet_waits_and_wait_times_out(two_cpus) -> None:
    first = placement_group([{"CPU": 2}])
    assert first.wait(DEADLINE_S)
    second = placement_group([{"CPU": 1}])
    assert second.wait(0.2) is False
    assert placement_group_table(second)["state"] == "PENDING"
    remove_placement_group(first)  # frees the CPUs: the pending group is reserved now
    assert second.wait(DEADLINE_S)
    assert placement_group_table(first)["state"] == "REMOVED"


def test_a_group_no_node_could_hold_fails_ready_naming_the_bundle_and_the_largest_node(two_cpus) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 64}])
    with pytest.raises(UnschedulableError, match=r"bundle 1 \{'CPU': 64.0\} fits on no node; the largest "
                                                 r"node 'local' has \{'CPU': 2.0, 'GPU': 0.0"):
        sluice.get(pg.ready(), timeout=DEADLINE_S)
    spread = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_SPREAD")
    with pytest.raises(UnschedulableError, match=r"STRICT_SPREAD puts each of its 2 bundles on its own "
                                                 r"node, but there are 1 live node"):
        spread.wait(DEADLINE_S)
    packed = placement_group([{"CPU": 1.5}, {"CPU": 1.5}], strategy="STRICT_PACK")
    with pytest.raises(UnschedulableError, match=r"its bundles together \{'CPU': 3.0\} fit on no node"):
        sluice.get(packed.ready(), timeout=DEADLINE_S)


@pytest.mark.parametrize("bundles, strategy, match", [
    ([], "PACK", r"bundles=\[\] must be a non-empty list"),
    ([{"CPU": -1}], "PACK", r"bundle 0 \{'CPU': -1\}: CPU=-1 must be a number >= 0"),
    ([{"CPU": 0}], "PACK", r"bundle 0 \{'CPU': 0\} asks for no resources"),
    ([{"CPU": 1}], "TIGHT", r"strategy='TIGHT' is not one of PACK, SPREAD, STRICT_PACK, STRICT_SPREAD"),
])
def test_bad_input_is_refused_naming_the_value(two_cpus, bundles, strategy, match) -> None:
    with pytest.raises(ValueError, match=match):
        placement_group(bundles, strategy=strategy)


def test_work_larger_than_its_bundle_is_refused_and_work_waits_while_the_bundle_is_busy(two_cpus) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(DEADLINE_S)
    with pytest.raises(ValueError, match=r"does not fit bundle 0 \{'CPU': 1.0\} of placement group"):
        pid.options(num_cpus=2, scheduling_strategy=InGroup(pg, 0))
    with pytest.raises(ValueError, match=r"placement_group_bundle_index=5 is not a bundle"):
        InGroup(pg, 5)
    # Bundle 0 holds one CPU: a second task there waits for the first.
    slow = sleep_then.options(scheduling_strategy=InGroup(pg, 0)).remote(0.5, 1)
    after = sleep_then.options(scheduling_strategy=InGroup(pg, 0)).remote(0, 2)
    ready, _ = sluice.wait([slow, after], num_returns=1, timeout=DEADLINE_S)
    assert ready == [slow]
    assert sluice.get(after, timeout=DEADLINE_S) == 2


def test_removing_a_group_stops_its_tasks_and_actors_and_frees_its_reservation(two_cpus) -> None:
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(DEADLINE_S)
    counter = Counter.options(scheduling_strategy=InGroup(pg)).remote()
    assert sluice.get(counter.add.remote(), timeout=DEADLINE_S) == 1
    long = sleep_then.options(scheduling_strategy=InGroup(pg), num_cpus=0.5).remote(600, 0)
    remove_placement_group(pg)
    # Ray's TaskPlacementGroupRemoved and ActorPlacementGroupRemoved, both UnschedulableErrors.
    with pytest.raises(TaskPlacementGroupRemoved,
                       match=r"was removed \(sluice.util.remove_placement_group\)"):
        sluice.get(long, timeout=DEADLINE_S)
    with pytest.raises(ActorPlacementGroupRemoved, match="was removed"):
        sluice.get(counter.add.remote(), timeout=DEADLINE_S)
    with pytest.raises(TaskPlacementGroupRemoved, match=r"placement group \w+ is removed"):
        pid.options(scheduling_strategy=InGroup(pg)).remote()
    with pytest.raises(ActorPlacementGroupRemoved, match=r"placement group \w+ is removed"):
        Counter.options(scheduling_strategy=InGroup(pg)).remote()
    poll(lambda: sluice.available_resources().get("CPU") == 2, "the group's CPUs to come back")
    assert not any("_group_" in k for k in sluice.available_resources())
    with pytest.raises(ValueError, match="no placement group named 'nope'"):
        get_placement_group("nope")


def test_spread_runs_on_the_one_node(two_cpus) -> None:
    assert len(sluice.get([pid.options(scheduling_strategy="SPREAD").remote() for _ in range(4)],
                          timeout=DEADLINE_S)) == 4
    with pytest.raises(ValueError, match=r"scheduling_strategy='SIDEWAYS' is not one sluice runs"):
        pid.options(scheduling_strategy="SIDEWAYS")


def test_assign_places_bundles_by_strategy() -> None:
    two = [{"CPU": 1.0}, {"CPU": 1.0}]
    nodes = [("a", {"CPU": 2.0}), ("b", {"CPU": 2.0}), ("c", {"CPU": 1.0})]
    assert assign(list(enumerate(two)), nodes, "STRICT_PACK", []) == {0: "a", 1: "a"}
    assert assign(list(enumerate(two)), nodes, "SPREAD", []) == {0: "a", 1: "b"}
    assert assign(list(enumerate(two + two)), nodes, "STRICT_SPREAD", []) is None
    assert assign(list(enumerate(two + two)), nodes, "SPREAD", []) == {0: "a", 1: "b", 2: "c", 3: "a"}
    assert assign(list(enumerate([{"CPU": 2.0}, {"CPU": 1.0}])), nodes, "PACK", []) == {0: "a", 1: "b"}
    assert assign([(1, {"CPU": 1.0})], nodes, "STRICT_SPREAD", ["a"]) == {1: "b"}


@sluice.remote
def inc(x: int) -> int:
    return x + 1


def test_a_plan_keeps_a_stage_strategy_through_every_pass_and_explain_shows_it(two_cpus) -> None:
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(DEADLINE_S)
    with sluice.InputNode() as inp:
        grouped = inc.options(scheduling_strategy=InGroup(pg, 0)).bind(inp)
        spread = inc.options(scheduling_strategy="SPREAD").bind(grouped)
        dag = inc.bind(inc.bind(spread))
    plan = dag.compile()
    strategies = [dict(op.options).get("scheduling_strategy") for stage in plan.stages for op in stage.ops]
    assert InGroup(pg, 0) in strategies and "SPREAD" in strategies
    text = plan.explain()
    assert f"strategy=placement group {pg.id}, bundle 0" in text
    assert "strategy=SPREAD" in text
    assert sluice.get(plan.execute(1), timeout=DEADLINE_S) == 5
    remove_placement_group(pg)  # the grouped stage can run no more: execute fails clearly
    with pytest.raises(UnschedulableError, match="is removed"):
        sluice.get(plan.execute(1), timeout=DEADLINE_S)


@sluice.remote
def gpu_ids() -> list:
    return sluice.get_gpu_ids()


def test_a_task_in_a_gpu_bundle_gets_a_gpu_id_no_other_task_holds() -> None:
    sluice.init(num_cpus=2, num_gpus=2)
    try:
        pg = placement_group([{"CPU": 0.5, "GPU": 1}])
        assert pg.wait(DEADLINE_S)
        grouped = gpu_ids.options(num_cpus=0.5, num_gpus=1, scheduling_strategy=InGroup(pg, 0)).remote()
        plain = gpu_ids.options(num_cpus=0.5, num_gpus=1).remote()
        ids = sluice.get([grouped, plain], timeout=DEADLINE_S)
        assert len(ids[0]) == 1 and len(ids[1]) == 1
        assert sluice.available_resources()["GPU"] <= 1  # the bundle's GPU stays reserved
    finally:
        sluice.shutdown()


@sluice.remote
def current_id() -> str | None:
    from sluice.util import get_current_placement_group

    pg = get_current_placement_group()
    return None if pg is None else pg.id


@sluice.remote
def parent_and_child() -> tuple:
    from sluice.util import get_current_placement_group

    mine = get_current_placement_group()
    return (None if mine is None else mine.id), sluice.get(current_id.remote())


def test_child_tasks_join_the_group_only_when_captured(two_cpus) -> None:
    from sluice.util import get_current_placement_group

    assert get_current_placement_group() is None  # the driver runs in no group
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(DEADLINE_S)
    captured = parent_and_child.options(scheduling_strategy=InGroup(
        pg, placement_group_capture_child_tasks=True)).remote()
    assert sluice.get(captured, timeout=DEADLINE_S) == (pg.id, pg.id)
    free = parent_and_child.options(scheduling_strategy=InGroup(pg)).remote()
    assert sluice.get(free, timeout=DEADLINE_S) == (pg.id, None)
    assert sluice.get(current_id.remote(), timeout=DEADLINE_S) is None


@sluice.remote
def context_group() -> str | None:
    return sluice.get_runtime_context().get_placement_group_id()


def test_the_runtime_context_names_the_group_a_task_runs_in(two_cpus) -> None:
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(DEADLINE_S)
    inside = context_group.options(scheduling_strategy=InGroup(pg)).remote()
    assert sluice.get([inside, context_group.remote()], timeout=DEADLINE_S) == [pg.id, None]
