"""The Plan runner and its hooks, on a real runtime: the order hooks see stages in, awaiting,
skipping, retrying, stopping, and hook sets that replace how actors are made and called
(a replica set, a gang, a trial) without another walker.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sluice
from sluice.compiler.ir import OpKind, ops_of
from sluice.compiler.passes.locality import ClusterView
from sluice.compiler.pipeline import compile_graph
from sluice.compiler.plan import Plan, Stage
from sluice.compiler.runner import Execution, Retry, StageDone, StageHooks, UseValue, run_plan
from sluice.dsl.nodes import InputNode, MultiOutputNode
from sluice.dsl.to_graph import build_graph
from sluice.executor import context
from sluice.executor.strategies import NodeAffinitySchedulingStrategy
from tests.compiler.dag_example import add, inc


@sluice.remote
def total(xs: list) -> int:
    return sum(xs)


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
def record(path: str, x: int) -> int:
    """Appends a line to ``path`` each time it runs."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


@sluice.remote
def fail_first(path: str, times: int, x: int) -> int:
    """Fails the first ``times`` runs (counted in ``path``), then returns ``x``."""
    with open(path, "a") as f:
        f.write("run\n")
    if len(Path(path).read_text().splitlines()) <= times:
        raise ConnectionError("not yet")
    return x


@sluice.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def pid(self, _: Any = None) -> int:
        return os.getpid()


@sluice.remote
class zeta:  # noqa: N801 (a lower-case name sorts its op ids after the input's)
    def step(self, x: int) -> int:
        return x + 1


class Recorder(StageHooks):
    """Records every hook call as (hook, stage id)."""

    def __init__(self, awaits: bool = False) -> None:
        self.awaits_results = awaits
        self.events: list[tuple[str, ...]] = []

    def begin(self, run: Execution) -> None:
        self.events.append(("begin",))

    def before_stage(self, run: Execution, stage: Stage) -> UseValue | None:
        self.events.append(("before", stage.id))
        return None

    def after_stage(self, run: Execution, stage: Stage, done: StageDone) -> Any:
        self.events.append(("after", stage.id))
        if self.awaits_results and stage.kind is OpKind.CALL:
            # awaited: the stage has finished and its value is here
            assert done.value == sluice.get(done.result) and done.seconds >= 0
        return done.result

    def end(self, run: Execution) -> None:
        self.events.append(("end",))


def diamond() -> Plan:
    with InputNode() as inp:
        top = inc.bind(inp)
        return add.bind(inc.options(num_cpus=0).bind(top), inc.bind(top)).compile()


def test_hooks_see_every_stage_in_plan_order_between_begin_and_end() -> None:
    plan = diamond()
    hooks = Recorder()
    run = run_plan(plan, hooks, (1,))
    expected: list[tuple[str, ...]] = [("begin",)]
    for stage in plan.stages:
        expected += [("before", stage.id), ("after", stage.id)]
    assert hooks.events == [*expected, ("end",)]
    (out,) = run.outputs()
    assert sluice.get(out) == 3 + 3


def test_awaiting_hooks_start_a_stage_only_after_every_stage_it_reads_finished() -> None:
    plan = diamond()
    hooks = Recorder(awaits=True)
    (out,) = run_plan(plan, hooks, (1,)).outputs()
    assert sluice.get(out) == 6
    events = hooks.events
    assert events[0] == ("begin",) and events[-1] == ("end",)
    stage_of = {op.id: st.id for st in plan.stages for op in st.ops}
    for stage in plan.stages:
        before = events.index(("before", stage.id))
        assert before < events.index(("after", stage.id))
        assert events.count(("before", stage.id)) == 1
        for read in stage.inputs:
            assert events.index(("after", stage_of[read])) < before


def test_plain_execute_is_the_runner_with_no_hooks() -> None:
    plan = diamond()
    assert sluice.get(plan.execute(1)) == sluice.get(run_plan(plan, StageHooks(), (1,)).outputs()[0])


def test_a_stage_given_a_value_does_not_run_and_readers_get_that_value(tmp_path: Path) -> None:
    log = str(tmp_path / "log")

    class SkipRecord(StageHooks):
        awaits_results = True

        def before_stage(self, run: Execution, stage: Stage) -> UseValue | None:
            return UseValue(41) if stage.name == "record" else None

    with InputNode() as inp:
        plan = inc.bind(record.bind(log, inp)).compile(optimize=False)
    (out,) = run_plan(plan, SkipRecord(), (1,)).outputs()
    assert sluice.get(out) == 42
    assert not Path(log).exists()


def test_a_failed_stage_is_retried_when_the_hooks_say_so(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    seen: list[str] = []

    class RetryTwice(StageHooks):
        awaits_results = True

        def stage_failed(self, run: Execution, stage: Stage, error: Exception,
                         seconds: float) -> UseValue | Retry:
            assert isinstance(error, ConnectionError)  # the task's own error type
            seen.append("ConnectionError")
            return Retry(0.01) if len(seen) < 3 else UseValue(-1)

    with InputNode() as inp:
        plan = inc.bind(fail_first.options(max_retries=0).bind(log, 2, inp)).compile(optimize=False)
    (out,) = run_plan(plan, RetryTwice(), (5,)).outputs()
    assert sluice.get(out) == 6 and seen == ["ConnectionError", "ConnectionError"]
    with InputNode() as inp:
        plan = inc.bind(fail_first.options(max_retries=0).bind(log + "2", 9, inp)).compile(optimize=False)
    seen.clear()
    (out,) = run_plan(plan, RetryTwice(), (5,)).outputs()
    assert sluice.get(out) == 0 and len(seen) == 3  # the third error was replaced by -1


def test_a_hook_that_raises_stops_the_run_and_no_later_stage_runs(tmp_path: Path) -> None:
    log = str(tmp_path / "log")

    class StopAfterFirst(StageHooks):
        awaits_results = True

        def __init__(self) -> None:
            self.finished = 0

        def after_stage(self, run: Execution, stage: Stage, done: StageDone) -> Any:
            self.finished += stage.kind is OpKind.CALL
            return done.result

        def poll(self, run: Execution) -> None:
            if self.finished:
                raise KeyboardInterrupt("stopped")

    with InputNode() as inp:
        plan = record.bind(log, record.bind(log, inp)).compile(optimize=False)
    with pytest.raises(KeyboardInterrupt, match="stopped"):
        run_plan(plan, StopAfterFirst(), (3,))
    assert Path(log).read_text().splitlines() == ["3"]


def test_task_options_from_the_hooks_reach_the_runtime() -> None:
    class NoCpu(StageHooks):
        def task_options(self, run: Execution, stage: Stage, options: dict[str, Any]) -> dict[str, Any]:
            return {**options, "num_cpus": 99, "_key": (("CPU", 99.0),)}

    with InputNode() as inp:
        plan = inc.bind(inp).compile()
    with pytest.raises(Exception, match=r"99"):
        run_plan(plan, NoCpu(), (1,))


def test_a_stage_runs_on_inputs_the_hooks_give_it_with_its_own_translation() -> None:
    with InputNode() as inp:
        plan = inc.bind(inc.bind(inp)).compile()
    (stage,) = [st for st in plan.stages if st.kind is OpKind.CALL]
    run = run_plan(plan, StageHooks(), (0,))
    refs = [run.submit(stage, (x,)) for x in range(5)]
    assert sluice.get([r[0] for r in refs]) == [2, 3, 4, 5, 6]


class ReplicaSet(StageHooks):
    """A serving replica set: K replicas of each actor stage, each call routed to one."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.turn = 0

    def create_actor(self, run: Execution, stage: Stage) -> Any:
        return [run.create_actor(stage) for _ in range(self.replicas)]

    def call_method(self, run: Execution, stage: Stage, actor: Any) -> Any:
        replica = actor[self.turn % len(actor)]
        self.turn += 1
        return run.call(stage, replica)[0]


def test_a_replica_set_is_a_hook_set_that_makes_k_actors_and_routes_each_call_to_one() -> None:
    with InputNode() as inp:
        plan = Counter.bind().pid.bind(inp).compile()
    hooks = ReplicaSet(3)
    pids = [sluice.get(run_plan(plan, hooks, (i,)).outputs()[0]) for i in range(6)]
    assert len(set(pids)) == 3 and pids[:3] == pids[3:]
    assert os.getpid() not in pids


class Gang(StageHooks):
    """A training gang: N actors started together, one call each per step."""

    def __init__(self, size: int) -> None:
        self.size = size

    def create_actor(self, run: Execution, stage: Stage) -> Any:
        return [run.create_actor(stage) for _ in range(self.size)]

    def call_method(self, run: Execution, stage: Stage, actor: Any) -> Any:
        return [run.call(stage, member)[0] for member in actor]


def test_a_gang_is_a_hook_set_that_calls_every_member_once_per_step() -> None:
    with InputNode() as inp:
        plan = Counter.bind(10).add.bind(inp).compile()
    hooks = Gang(3)
    steps = [sluice.get(run_plan(plan, hooks, (1,)).outputs()[0]) for _ in range(2)]
    assert steps == [[11, 11, 11], [12, 12, 12]]


class Trials(StageHooks):
    """A tuning trial: each run re-creates the actor with the trial's config and reports."""

    def __init__(self) -> None:
        self.config = 0
        self.reports: list[tuple[int, int]] = []

    def begin(self, run: Execution) -> None:
        for stage in run.plan.stages:
            if stage.kind is OpKind.ACTOR:
                old = run.state.forget_actor(stage.ops[0].id)
                if old is not None:
                    sluice.kill(old)

    def create_actor(self, run: Execution, stage: Stage) -> Any:
        return run.create_actor(stage, args=(self.config,))

    def after_stage(self, run: Execution, stage: Stage, done: StageDone) -> Any:
        if stage.kind is OpKind.METHOD:
            self.reports.append((self.config, sluice.get(done.result)))
        return done.result


def test_a_trial_is_a_hook_set_that_makes_a_fresh_actor_per_run_and_reports() -> None:
    with InputNode() as inp:
        plan = Counter.bind().add.bind(inp).compile()
    hooks = Trials()
    for config in (100, 200):
        hooks.config = config
        run_plan(plan, hooks, (1,))
        run_plan(plan, hooks, (1,))
    assert hooks.reports == [(100, 101), (100, 101), (200, 201), (200, 201)]


# -- actor chains --------------------------------------------------------------------------------

def relay_plan(hops: int, cls: Any = Counter) -> Plan:
    actors = [cls.bind(), cls.bind()]
    with InputNode() as inp:
        node = inp
        for i in range(hops):
            node = (actors[i % 2].step if cls is zeta else actors[i % 2].add).bind(node)
    return node.compile()


def tasks_per_execute(plan: Plan, x: int, settled_at: int | None = None) -> int:
    """Driver-side tasks one execute of ``plan`` makes. The first executes run hop by hop
    until the chain's actors acknowledge its set-up (later under load): with ``settled_at``,
    execute until the count reaches it (or 60 s pass) and return the last count."""
    deadline = time.monotonic() + 60
    while True:
        ids = context.current().scheduler.task_ids
        before = next(ids)  # task ids are consecutive: taking one costs nothing
        sluice.get(plan.execute(x), timeout=30)
        count = next(ids) - before - 1
        if settled_at is None or count == settled_at or time.monotonic() > deadline:
            return count


def test_the_runner_forwards_exactly_the_chains_the_plan_lists() -> None:
    plan = relay_plan(4, zeta)
    assert len(plan.actor_chains) == 1
    assert tasks_per_execute(plan, 1, settled_at=1) == 1
    unchained = dataclasses.replace(plan, actor_chains=())
    assert tasks_per_execute(unchained, 1) == 4
    assert sluice.get(unchained.execute(1)) == sluice.get(plan.execute(1)) == 5


def test_a_chain_whose_second_actor_comes_after_its_first_call_in_plan_order_runs() -> None:
    with InputNode() as inp:
        plan = zeta.bind().step.bind(Counter.bind().add.bind(inp)).compile()
    kinds = [st.kind for st in plan.stages]
    # Op ids order the plan: Counter.add sorts before the actor of class zeta.
    assert kinds.index(OpKind.METHOD) < kinds.index(OpKind.ACTOR, kinds.index(OpKind.ACTOR) + 1)
    assert len(plan.actor_chains) == 1
    assert [sluice.get(plan.execute(1), timeout=30) for _ in range(4)] == [2, 3, 4, 5]


def test_hooks_that_forward_chains_see_only_the_last_stage_of_each() -> None:
    plan = relay_plan(3, zeta)

    class Forwarding(Recorder):
        forwards_chains = True

    hooks = Forwarding()
    (out,) = run_plan(plan, hooks, (1,)).outputs()
    assert sluice.get(out) == 4
    methods = [st.id for st in plan.stages if st.kind is OpKind.METHOD]
    befores = [e[1] for e in hooks.events if e[0] == "before"]
    assert [b for b in befores if b in methods] == methods[-1:]
    assert len(befores) == len(plan.stages) - 2
    every = Recorder()
    run_plan(plan, every, (1,))
    assert [e[1] for e in every.events if e[0] == "before" and e[1] in methods] == methods


def test_a_multi_output_plan_with_hooks_gives_every_output() -> None:
    with InputNode() as inp:
        plan = MultiOutputNode([inc.bind(inp), add.bind(inp, 10)]).compile()
    outs = run_plan(plan, StageHooks(), (1,)).outputs()
    assert sluice.get(outs) == [2, 11]


def test_a_plan_placed_on_a_node_runs_with_a_soft_affinity_for_it() -> None:
    # A cluster view as the dsl reads it from a backend of two nodes; the local runtime has
    # neither, and the affinity is soft, so the stage runs here all the same.
    ref = sluice.put(list(range(10_000)))
    graph = build_graph(total.bind(ref))
    (constant,) = [o.id for o in ops_of(graph).values() if o.kind is OpKind.CONSTANT]
    plan = compile_graph(graph, cluster=ClusterView(held={"n1": set(), "n2": {constant}},
                                                    sizes={constant: 1 << 20}))
    seen: dict[str, Any] = {}

    class Recording(StageHooks):
        def task_options(self, run: Execution, stage: Stage, options: dict[str, Any]) -> dict[str, Any]:
            seen[stage.name] = options["scheduling_strategy"]
            return options

    run = run_plan(plan, Recording())
    assert seen == {"total": NodeAffinitySchedulingStrategy("n2", soft=True)}
    assert sluice.get(run.outputs()[0]) == sum(range(10_000))
