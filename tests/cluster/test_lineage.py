"""The head's lineage bookkeeping on its own (no cluster): the byte cap, forgetting and
evicting over worklists, and rebuild plans worked through in bounded steps."""

from __future__ import annotations

from collections import Counter

import pytest

from sluice.exceptions import InternalError
from sluice.executor.cluster import lineage as L

STEP_BYTES = 600  # what each task below counts against the cap


class Table:
    """A plain object table as a RebuildView: oid -> "ready" | "pending" | "failed"."""

    def __init__(self) -> None:
        self.state: dict[int, str] = {}
        self.holds: Counter = Counter()
        self.submitted: list[tuple[str, list[int]]] = []
        self.failures: dict[int, L.Failure] = {}

    def status(self, oid: int) -> int:
        state = self.state.get(oid)
        return L.GONE if state is None else L.FAILED if state == "failed" else L.HELD

    def hold(self, oid: int) -> None:
        assert oid in self.state, f"held {oid}, which is not tracked"
        self.holds[oid] += 1

    def unhold(self, oid: int) -> None:
        self.holds[oid] -= 1
        assert self.holds[oid] >= 0

    def submit(self, task: str, outputs: list[int]) -> None:
        self.submitted.append((task, outputs))
        for oid in outputs:
            self.state[oid] = "pending"

    def fail(self, oid: int, failure: L.Failure, context: object) -> None:
        self.failures[oid] = failure
        self.state[oid] = "failed"


def chain(lin: L.Lineage, table: Table, steps: int, check_every: int = 0) -> int:
    """``x = f.remote(x)`` ``steps`` times, as the head sees it: each result is recorded when
    its task finishes, then its input is freed. Only the last object stays; returns its id."""
    table.state[0] = "ready"  # the chain's first input: put by the driver, which keeps it
    for i in range(1, steps + 1):
        table.state[i] = "ready"
        lin.record(f"step {i}", outputs=[i], deps=[i - 1], nbytes=STEP_BYTES)
        if i > 1:
            del table.state[i - 1]
            lin.release(i - 1)
        assert lin.nbytes <= lin.cap
        if check_every and i % check_every == 0:
            lin.check()
    return steps


def plan_all(plan: L.RebuildPlan, table: Table, budget: int = L.REBUILD_STEP) -> int:
    steps = 0
    while plan.step(table, budget):
        steps += 1
    return steps + 1


def test_a_100000_step_chain_never_keeps_more_than_the_cap() -> None:
    cap = 64 * 1024
    lin, table = L.Lineage(cap), Table()
    tip = chain(lin, table, 100_000, check_every=9_973)
    lin.check()
    assert lin.nbytes <= cap and lin.count <= cap // STEP_BYTES
    assert lin.evictions > 0
    assert len(lin.uses) <= lin.count + 1 and len(lin.released) <= lin.count + 1
    assert len(lin.evicted) <= lin.count + 2  # markers only for live or still-read objects
    lin.release(tip)
    assert (lin.nbytes, lin.count, lin.uses, lin.released, lin.evicted) == (0, 0, {}, set(), set())


def test_freed_inputs_keep_their_lineage_only_while_a_kept_task_reads_them() -> None:
    lin = L.Lineage()
    lin.record("a", outputs=[1], deps=[], nbytes=100)
    lin.record("b", outputs=[2], deps=[1], nbytes=100)
    lin.record("c", outputs=[3], deps=[1, 2], nbytes=100)
    lin.release(1)
    lin.release(2)
    assert lin.lineage_of(1).task == "a" and lin.lineage_of(2).task == "b"
    lin.check()
    lin.release(3)  # nothing reads 1 or 2 any more: the whole lineage goes, over a worklist
    assert lin.count == 0 and lin.made_by == {} and lin.uses == {}
    lin.check()


def test_past_the_cap_the_oldest_objects_lose_their_lineage_first() -> None:
    lin = L.Lineage(cap=3 * STEP_BYTES)
    for oid in range(1, 6):
        lin.record(f"t{oid}", outputs=[oid], deps=[], nbytes=STEP_BYTES)
        lin.check()
    assert sorted(lin.made_by) == [3, 4, 5]
    assert lin.was_evicted(1) and lin.was_evicted(2) and not lin.was_evicted(3)
    lin.release(1)  # a freed object nothing reads leaves no marker behind
    assert not lin.was_evicted(1)


def test_evicting_a_live_object_takes_the_lineage_of_its_freed_inputs_along() -> None:
    lin = L.Lineage(cap=3 * STEP_BYTES)
    lin.record("a", outputs=[1], deps=[], nbytes=STEP_BYTES)
    lin.record("b", outputs=[2], deps=[1], nbytes=STEP_BYTES)
    lin.release(1)
    lin.record("c", outputs=[3], deps=[], nbytes=STEP_BYTES)
    lin.record("d", outputs=[4], deps=[], nbytes=STEP_BYTES)  # 4 records: 2 (oldest live) goes
    assert sorted(lin.made_by) == [3, 4] and lin.nbytes == 2 * STEP_BYTES
    assert lin.was_evicted(2) and not lin.was_evicted(1)
    lin.check()


def test_a_record_larger_than_the_cap_is_evicted_at_once() -> None:
    lin = L.Lineage(cap=1000)
    lin.record("huge", outputs=[1], deps=[], nbytes=5000)
    assert lin.count == 0 and lin.nbytes == 0 and lin.was_evicted(1)


def test_a_rebuilt_object_replaces_its_lineage_without_losing_its_inputs() -> None:
    lin = L.Lineage()
    lin.record("a", outputs=[1], deps=[], nbytes=100)
    lin.record("b", outputs=[2], deps=[1], nbytes=100)
    lin.release(1)
    lin.record("b again", outputs=[2], deps=[1], nbytes=100)
    assert lin.lineage_of(2).task == "b again" and lin.lineage_of(1).task == "a"
    assert lin.count == 2
    lin.check()


def test_a_rebuild_of_a_100000_step_chain_is_planned_in_steps_inputs_first() -> None:
    lin, table = L.Lineage(), Table()  # the default 1 GB cap keeps the whole chain
    tip = chain(lin, table, 100_000)
    assert lin.count == 100_000
    plan = L.RebuildPlan(lin)
    del table.state[tip]
    table.state[tip] = "pending"  # its node died: the head made it pending
    plan.add(tip, "context")
    steps = plan_all(plan, table)
    assert steps > 100_000 // L.REBUILD_STEP  # bounded steps (the head frees its lock between)
    assert [task for task, _ in table.submitted] == [f"step {i}" for i in range(1, tip + 1)]
    assert table.submitted[-1] == (f"step {tip}", [tip])
    assert not +table.holds  # every hold was given back
    assert not plan.pending and plan.failed == {} and plan.waiting == {}


def test_a_lost_object_whose_chain_was_evicted_fails_naming_the_evicted_object() -> None:
    lin, table = L.Lineage(cap=100 * STEP_BYTES), Table()
    tip = chain(lin, table, 1_000)
    plan = L.RebuildPlan(lin)
    table.state[tip] = "pending"
    plan.add(tip, "on node 2")
    plan_all(plan, table, budget=7)
    failure = table.failures[tip]
    assert failure.reason == L.EVICTED and lin.was_evicted(failure.cause)
    assert failure.cause < tip and table.submitted == [] and not +table.holds


def test_a_put_object_cannot_be_rebuilt_and_a_failed_input_fails_its_reader() -> None:
    lin, table = L.Lineage(), Table()
    table.state.update({1: "pending", 2: "failed", 3: "pending"})
    lin.record("reads a failed input", outputs=[3], deps=[2], nbytes=100)
    plan = L.RebuildPlan(lin)
    plan.add(1, None)  # stored by put(): no lineage
    plan.add(3, None)
    plan_all(plan, table)
    assert table.failures == {1: L.Failure(1, L.NO_LINEAGE), 3: L.Failure(2, L.FAILED_INPUT)}


def test_a_shared_freed_input_is_rebuilt_once_and_lost_siblings_run_together() -> None:
    lin, table = L.Lineage(), Table()
    table.state.update({10: "pending", 11: "pending", 20: "pending", 21: "ready"})
    lin.record("base", outputs=[1], deps=[], nbytes=100)
    lin.record("pair", outputs=[10, 11], deps=[1], nbytes=100)  # num_returns=2, both lost
    lin.record("other", outputs=[20], deps=[1, 21], nbytes=100)
    lin.release(1)
    plan = L.RebuildPlan(lin)
    for oid in (10, 11, 20):
        plan.add(oid, None)
    plan_all(plan, table, budget=1)
    assert table.submitted == [("base", [1]), ("pair", [10, 11]), ("other", [20])]
    assert not +table.holds and table.failures == {}


def test_an_input_looked_at_is_held_until_its_reader_is_submitted() -> None:
    lin, table = L.Lineage(), Table()
    table.state.update({1: "ready", 5: "pending"})
    lin.record("a", outputs=[2], deps=[], nbytes=100)
    lin.record("b", outputs=[5], deps=[1, 2], nbytes=100)
    lin.release(2)
    plan = L.RebuildPlan(lin)
    plan.add(5, None)
    plan.step(table, budget=2)  # root pushed, input 1 looked at: held from now on
    assert table.holds[1] == 1 and table.submitted == []
    plan_all(plan, table)
    assert table.submitted == [("a", [2]), ("b", [5])] and not +table.holds


def test_a_cycle_in_lineage_is_an_internal_error() -> None:
    lin, table = L.Lineage(), Table()
    lin.record("a", outputs=[1], deps=[2], nbytes=100)
    lin.record("b", outputs=[2], deps=[1], nbytes=100)
    lin.release(1)
    lin.release(2)
    table.state[1] = "pending"
    plan = L.RebuildPlan(lin)
    plan.add(1, None)
    with pytest.raises(InternalError, match="reads itself"):
        plan_all(plan, table)


def test_the_cap_comes_from_the_environment_or_defaults_to_1_gb() -> None:
    assert L.max_lineage_bytes_from({}) == 1 << 30 == L.DEFAULT_MAX_LINEAGE_BYTES
    assert L.max_lineage_bytes_from({"SLUICE_MAX_LINEAGE_BYTES": "4096"}) == 4096
    for bad in ("0", "-1", "1GB"):
        with pytest.raises(ValueError, match=f"SLUICE_MAX_LINEAGE_BYTES='{bad}': give a positive"):
            L.max_lineage_bytes_from({"SLUICE_MAX_LINEAGE_BYTES": bad})


def test_a_cap_that_is_not_a_positive_number_of_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="max_lineage_bytes=0: give a positive number of bytes"):
        L.Lineage(cap=0)
