"""The Plan runner: the one walker of Plans, with per-stage hooks.

A Plan's stages are in a topological order; the runner walks them front to
back and, for each, asks its hooks (a :class:`StageHooks`) what to do. The
stage-to-task translation is not here but in :mod:`sluice.compiler.run`, once:
an :class:`Execution` (one run of a Plan) turns a stage into a task
(:meth:`Execution.submit`), an actor (:meth:`Execution.create_actor`) or a method
call (:meth:`Execution.call`), on any inputs the hooks give it.

Three ways of running a Plan are three hook sets over this walker:

- **Plain** ``execute()`` is the runner with no hooks. It only submits: the
  steps of a Plan are prepared once per Plan and runtime (in its
  :class:`~sluice.compiler.plan_run.PlanRun`), a stage's value is the ref its
  task returns, and readers get refs, so a whole execute is one pass of
  submissions. Actor chains the Plan lists are forwarded actor to actor.
- **sluice.workflow** (``awaits_results``): a stage's readers start only once it
  finished. ``before_stage`` skips a stage whose checkpoint exists or whose
  cached value is known, ``after_stage`` checkpoints a value, ``stage_failed``
  retries with a delay and backoff (or hands the error on, for
  ``catch_exceptions``), ``poll`` stops a cancelled run.
- **sluice.data**: ``run_stage`` makes each stage's value a stream of blocks:
  it runs the stage once per block with :meth:`Execution.submit` (the same
  translation and inputs, a stage function chosen by ``stage_function``) and a
  bounded window of blocks in flight; ``create_actor`` makes an actor pool and
  each block's call goes to one of its actors.

The next libraries are more hook sets, not more walkers:

- a **training gang** (N actors in a placement group started together, one call
  each per step): ``create_actor`` reserves the group's resources together and
  returns the N actors made by ``run.create_actor(stage)`` as one value;
  ``call_method`` calls the step's method on each member and returns their N
  refs as the stage's value; ``after_stage`` (with ``awaits_results``) can check
  the step of every member.
- a **serving replica set** (K replicas of an actor stage, each call routed to
  one): ``create_actor`` starts K replicas; ``call_method`` routes a call to one
  (round robin, least loaded) with ``run.call(stage, replica)``; scaling drops
  the set with ``run.state.forget_actor`` so the next run makes a new one.
- a **tuning trial** (an actor stage re-created per trial, results reported):
  ``begin`` forgets (and kills) the last trial's actor so ``create_actor`` makes
  a fresh one with the trial's config (``run.create_actor(stage, args=...)``);
  ``after_stage`` reports each result to the searcher; ``poll`` raises to stop
  a trial early, and the runner cancels what is still running.

tests/compiler/test_runner.py runs each of these three as a small hook set.

Per-run state (values, the input) lives in the Execution; per-Plan state
(registered functions, actors) in the PlanRun; the Plan itself never changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.compiler import history
from sluice.compiler.ir import OpKind, unpack_template
from sluice.compiler.plan import Plan, Stage
from sluice.compiler.plan_run import PlanRun, plan_run
from sluice.compiler.run import (
    ChainCall,
    DAGInput,
    InputReads,
    call_arguments,
    chain_steps,
    check_input,
    input_reads,
    stage_function,
    start_actor,
    task_options,
)
from sluice.executor import api
from sluice.executor.calls import dumps_function
from sluice.executor.object_ref import ObjectRef

Step = Callable[["Execution", Stage], Any]


@dataclass(frozen=True, slots=True)
class UseValue:
    """A hook's answer: the stage's value is ``value`` (it does not run, or its error is replaced)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Retry:
    """``stage_failed``'s answer: run the stage again, no sooner than ``delay_s`` from now."""

    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StageDone:
    """What a stage produced, for ``after_stage``.

    ``result``: what ``run_stage`` returned (an ObjectRef, a list of them, an
    actor, a stream). With ``awaits_results`` the stage has finished: ``value``
    is the fetched value of ``result`` and ``seconds`` the time from its start.
    """

    result: Any
    value: Any = None
    seconds: float = 0.0


class StageHooks:
    """Per-stage hooks of the Plan runner; every default does what plain ``execute()`` does.

    Subclass and override what a library needs; call ``super()`` (or the
    :class:`Execution` method it names) to keep the default. Each method gets
    the :class:`Execution` (``run``): its Plan, input, runtime, ``values`` (op id ->
    value of every stage so far) and ``state`` (the Plan's PlanRun: its actors).
    """

    #: True: a stage's readers start only once it finished and ``after_stage`` saw
    #: its fetched value (and ``stage_failed`` its error). False: stages are
    #: submitted back to back and readers get refs; errors surface at ``get``.
    awaits_results: bool = False
    #: True: each actor chain of the Plan runs as one unit (forwarded actor to
    #: actor) where its last call stands, and the hooks see only that last stage.
    #: False: every method call is its own stage, made through ``call_method``.
    #: (Leave it False when ``create_actor`` makes anything but one actor handle.)
    forwards_chains: bool = False
    #: With ``awaits_results``: how often (seconds) ``poll`` runs while stages run.
    poll_interval_s: float = 0.5

    def begin(self, run: Execution) -> None:
        """Before the first stage (check the Plan, set up per-run state)."""

    def poll(self, run: Execution) -> None:
        """Before each stage, and while stages run; raise to stop the run (it is cancelled)."""

    def before_stage(self, run: Execution, stage: Stage) -> UseValue | None:
        """None: run ``stage``. ``UseValue(v)``: do not run it; its value is ``v``."""
        return None

    def run_stage(self, run: Execution, stage: Stage) -> Any:
        """Run ``stage``; its result (readers get it, or with ``awaits_results`` its value)."""
        return run.run_stage(stage)

    def stage_function(self, run: Execution, stage: Stage) -> Any:
        """What a worker runs for one task of a call stage (registered once per Plan run)."""
        return stage_function(run.plan, stage, run.functions)

    def task_options(self, run: Execution, stage: Stage, options: dict[str, Any]) -> dict[str, Any]:
        """The task options of one task of ``stage`` (the default: the stage's own)."""
        return options

    def create_actor(self, run: Execution, stage: Stage) -> Any:
        """The value of ACTOR ``stage``: called once per Plan run (until ``forget_actor``)."""
        return run.create_actor(stage)

    def call_method(self, run: Execution, stage: Stage, actor: Any) -> Any:
        """Make METHOD ``stage``'s call on ``actor`` (what ``create_actor`` made); its result."""
        refs = run.call(stage, actor)
        return refs[0] if len(refs) == 1 else refs

    def after_stage(self, run: Execution, stage: Stage, done: StageDone) -> Any:
        """What ``stage``'s readers get (the default: its result, refs as they are)."""
        return done.result

    def stage_failed(self, run: Execution, stage: Stage, error: Exception,
                     seconds: float) -> UseValue | Retry:
        """With ``awaits_results``: ``stage``'s task raised ``error``. Retry, replace, or raise."""
        raise error

    def end(self, run: Execution) -> None:
        """After the last stage, when every output has its value."""


class Execution:
    """One run of a Plan: its input, the value of each stage so far, and how stages run.

    The methods are the stage-to-task translation every hook set uses: a stage
    becomes a task on any inputs (:meth:`submit`), an actor (:meth:`create_actor`,
    :meth:`actor`) or a method call on any actor (:meth:`call`).
    """

    __slots__ = ("plan", "state", "rt", "input", "values", "hooks", "chains")

    def __init__(self, plan: Plan, state: PlanRun, rt: Any, dag_input: DAGInput,
                 hooks: StageHooks | None, chains: dict[str, ChainCall]):
        self.plan = plan
        self.state = state
        self.rt = rt
        self.input = dag_input
        self.values: dict[str, Any] = {}
        self.hooks = hooks
        self.chains = chains  # id of a chain's last stage -> the chain, run in its place

    @property
    def functions(self) -> dict[int, bytes]:
        """The Plan's functions by id."""
        return self.state.once(self.state.prepared, "functions", lambda: dict(self.plan.functions))

    def inputs(self, stage: Stage) -> tuple[Any, ...]:
        """The values of ``stage``'s inputs, in its input order."""
        values = self.values
        return tuple(values[i] for i in stage.inputs)

    def outputs(self) -> list[Any]:
        """The values of the Plan's outputs, in order."""
        return [self.values[o] for o in self.plan.outputs]

    def run_stage(self, stage: Stage) -> Any:
        """The default for every stage kind: input, selector, bound object, task, actor,
        method call, chain."""
        chain = self.chains.get(stage.id) if self.chains else None
        if chain is not None:
            return chain(self, stage)
        return _STEPS.get(stage.kind, _call_step)(self, stage)

    def submit(self, stage: Stage, args: tuple[Any, ...] | None = None,
               num_returns: int | None = None) -> list[ObjectRef]:
        """Run call ``stage`` as one task on ``args`` (default: its input values); its refs.

        The stage's function is registered once per Plan run; ``num_returns``
        overrides the stage's (a data block split into parts).
        """
        hooks = self.hooks
        key = stage.id if hooks is None else (stage.id, type(hooks))
        task = self.state.tasks.get(key)
        if task is None:
            task = self.state.once(self.state.tasks, key, lambda: self._register(stage))
        fn_id, data, options = task
        if args is None:
            values = self.values
            args = tuple([values[i] for i in stage.inputs])
        if hooks is not None:
            options = hooks.task_options(self, stage, options)
        if num_returns is not None:
            options = {**options, "num_returns": num_returns}
        return self.rt.submit_task(fn_id, data, options["name"], args, {}, options)

    def _register(self, stage: Stage) -> tuple[int, bytes, dict[str, Any]]:
        fn = (stage_function(self.plan, stage, self.functions) if self.hooks is None
              else self.hooks.stage_function(self, stage))
        fn_id, data = dumps_function(fn, f"stage {stage.name}")
        return fn_id, data, task_options(stage)

    def actor(self, stage: Stage) -> Any:
        """The value of ACTOR ``stage`` in this Plan run: made once (by the hooks' ``create_actor``)."""
        op = stage.ops[0]
        found = self.state.actors.get(op.id)
        if found is not None:
            return found
        hooks = self.hooks
        make = (lambda: self.create_actor(stage)) if hooks is None else (
            lambda: hooks.create_actor(self, stage))
        return self.state.once(self.state.actors, op.id, make)

    def create_actor(self, stage: Stage, args: tuple[Any, ...] | None = None,
                     kwargs: dict[str, Any] | None = None) -> Any:
        """A new actor of ACTOR ``stage`` (its handle), constructed with ``args``/``kwargs``
        (default: the stage's own arguments, filled with the values of its inputs)."""
        op = stage.ops[0]
        if args is None:
            args, kwargs = call_arguments(op, self._template(op.id, op.template), self.values)
        return start_actor(self.rt, stage, self.functions[op.fn_id], args, kwargs or {})

    def call(self, stage: Stage, actor: Any = None, args: tuple[Any, ...] | None = None,
             kwargs: dict[str, Any] | None = None, num_returns: int | None = None) -> list[ObjectRef]:
        """Call METHOD ``stage``'s method on ``actor`` (default: the stage's own actor's
        value) with ``args``/``kwargs`` (default: the stage's, filled in); its refs."""
        op = stage.ops[0]
        if actor is None:
            actor = self.values[op.inputs[0]]
        if args is None:
            args, kwargs = call_arguments(op, self._template(op.id, op.template), self.values,
                                          skip_first=True)
        return self.rt.submit_actor_task(actor._actor_id, op.method, op.name, args, kwargs or {},
                                         {"num_returns": num_returns or op.num_returns})

    def _template(self, op_id: str, template: bytes) -> tuple[tuple, dict]:
        found = self.state.prepared.get(("template", op_id))
        if found is None:
            found = self.state.once(self.state.prepared, ("template", op_id),
                                    lambda: unpack_template(template))
        return found


def _input_step(run: Execution, stage: Stage) -> Any:
    return run.input.stage_value()


def _select_step(run: Execution, stage: Stage) -> Any:
    return run.input.select(stage.ops[0].key)


def _constant_step(run: Execution, stage: Stage) -> Any:
    """A bound object's ref (unpickled once per Plan run): its readers get the value."""
    op = stage.ops[0]
    args, _ = run._template(op.id, op.template)
    return args[0]


def _call_step(run: Execution, stage: Stage) -> Any:
    refs = run.submit(stage)
    return refs[0] if len(refs) == 1 else refs


def _actor_step(run: Execution, stage: Stage) -> Any:
    return run.actor(stage)


def _method_step(run: Execution, stage: Stage) -> Any:
    actor = run.values[stage.ops[0].inputs[0]]
    if run.hooks is not None:
        return run.hooks.call_method(run, stage, actor)
    refs = run.call(stage, actor)
    return refs[0] if len(refs) == 1 else refs


def _blocks_step(run: Execution, stage: Stage) -> Any:
    raise TypeError(f"stage {stage.name} works on a stream of blocks (sluice.data); a Plan with "
                    "one runs through sluice.data's hooks, not execute()")


_STEPS: dict[OpKind, Step] = {OpKind.INPUT: _input_step, OpKind.SELECT: _select_step,
                              OpKind.CONSTANT: _constant_step,
                              OpKind.ACTOR: _actor_step, OpKind.METHOD: _method_step,
                              OpKind.BLOCKS: _blocks_step}


def _walk_order(plan: Plan, chains: dict[str, ChainCall]) -> list[Stage]:
    """The stages in plan order; with chains, a chain's calls before its last are left out
    (the chain runs where its last call stands and gives that call's value)."""
    if not chains:
        return list(plan.stages)
    inside = {op_id for chain in plan.actor_chains for op_id in chain.ops[:-1]}
    return [st for st in plan.stages if st.output not in inside]


def _chained(plan: Plan, state: PlanRun) -> tuple[list[Stage], dict[str, ChainCall]]:
    """(walk order, chains by last stage id) of ``plan`` when chains are forwarded."""
    found = state.prepared.get("chained")
    if found is None:
        def make() -> tuple[list[Stage], dict[str, ChainCall]]:
            chains = chain_steps(plan)
            return _walk_order(plan, chains), chains
        found = state.once(state.prepared, "chained", make)
    return found


def _plain_steps(plan: Plan, state: PlanRun
                 ) -> tuple[list[tuple[Stage, Step]], dict[str, ChainCall], InputReads]:
    """Each stage of the walk with its step, picked once per Plan run (no hooks to ask),
    the chains, and what the Plan reads of its input."""
    order, chains = _chained(plan, state)
    return [(stage, chains.get(stage.id) or _STEPS.get(stage.kind, _call_step))
            for stage in order], chains, input_reads(plan)


def _checked_input(reads: InputReads, args: tuple, kwargs: dict) -> DAGInput:
    """The run's input, every read of it done: a bad input raises before any stage starts."""
    dag_input = DAGInput(args, kwargs)
    check_input(reads, dag_input)
    return dag_input


def execute_plan(plan: Plan, args: tuple, kwargs: dict) -> Any:
    """Plain ``execute()``: the runner with no hooks; the output ObjectRef(s) at once."""
    rt = api.runtime()
    state = plan_run(plan, rt)
    prepared = state.prepared.get("plain")
    if prepared is None:
        prepared = state.once(state.prepared, "plain", lambda: _plain_steps(plan, state))
    steps, chains, reads = prepared
    run = Execution(plan, state, rt, _checked_input(reads, args, kwargs), None, chains)
    values = run.values
    for stage, step in steps:
        values[stage.output] = step(run, stage)
    if history.recording:
        history.record(plan, values, "execute")
    outs = [_as_ref(values[o], rt) for o in plan.outputs]
    return outs if plan.multi_output else outs[0]


def _as_ref(value: Any, rt: Any) -> Any:
    """execute() always returns refs, even for an output that is the input itself."""
    if isinstance(value, ObjectRef) or (isinstance(value, list) and value
                                        and all(isinstance(v, ObjectRef) for v in value)):
        return value
    return rt.put(value)


def run_plan(plan: Plan, hooks: StageHooks, args: tuple = (),
             kwargs: dict[str, Any] | None = None) -> Execution:
    """Run ``plan`` once with ``hooks``; the finished Execution (``outputs()``: the values
    its output stages left, refs or values as the hooks made them)."""
    rt = api.runtime()
    state = plan_run(plan, rt)
    order, chains = _chained(plan, state) if hooks.forwards_chains else (list(plan.stages), {})
    reads = state.once(state.prepared, "input_reads", lambda: input_reads(plan))
    run = Execution(plan, state, rt, _checked_input(reads, args, kwargs or {}), hooks, chains)
    hooks.begin(run)
    if hooks.awaits_results:
        _AwaitingWalk(run, order).walk()
    else:
        for stage in order:
            hooks.poll(run)
            run.values[stage.output] = _start(run, stage)
    hooks.end(run)
    if history.recording:
        history.record(plan, run.values, type(hooks).__name__)
    return run


def _start(run: Execution, stage: Stage) -> Any:
    """Run one stage through the hooks (not awaiting it); the value its readers get."""
    hooks = run.hooks
    assert hooks is not None
    skip = hooks.before_stage(run, stage)
    if skip is not None:
        return skip.value
    return hooks.after_stage(run, stage, StageDone(hooks.run_stage(run, stage)))


def _awaitable(result: Any) -> bool:
    return isinstance(result, ObjectRef) or (
        isinstance(result, list) and bool(result) and all(isinstance(r, ObjectRef) for r in result))


class _AwaitingWalk:
    """The walk for ``awaits_results``: a stage starts once every stage it reads finished.

    ``pending``: stages not started, in plan order (a retried stage goes back,
    with ``not_before`` its earliest start); ``running``: first ref of a started
    stage -> (stage, its result, when it started).
    """

    def __init__(self, run: Execution, order: list[Stage]):
        self.run = run
        self.hooks: StageHooks = run.hooks  # type: ignore[assignment]
        self.pending = list(order)
        self.not_before: dict[str, float] = {}
        self.running: dict[ObjectRef, tuple[Stage, Any, float]] = {}

    def walk(self) -> None:
        try:
            while self.pending or self.running:
                self.hooks.poll(self.run)
                self._start_ready()
                if self.running:
                    self._finish_some()
                elif self.pending:  # only retries waiting for their delay
                    wake = min(self.not_before.get(st.id, 0.0) for st in self.pending)
                    time.sleep(max(0.0, min(wake - time.monotonic(), self.hooks.poll_interval_s)))
        except BaseException:
            for ref in self.running:  # the run stops: so do the stages it started
                try:
                    api.cancel(ref)
                except Exception:  # already finished or gone: nothing to stop
                    pass
            raise

    def _start_ready(self) -> None:
        values, now = self.run.values, time.monotonic()
        for stage in list(self.pending):
            if self.not_before.get(stage.id, 0.0) > now or not all(i in values for i in stage.inputs):
                continue
            self.pending.remove(stage)
            skip = self.hooks.before_stage(self.run, stage)
            if skip is not None:
                self.run.values[stage.output] = skip.value
                continue
            started = time.monotonic()
            result = self.hooks.run_stage(self.run, stage)
            if _awaitable(result):
                first = result if isinstance(result, ObjectRef) else result[0]
                self.running[first] = (stage, result, started)
            else:
                self.run.values[stage.output] = self.hooks.after_stage(self.run, stage, StageDone(result))

    def _finish_some(self) -> None:
        refs = list(self.running)
        ready, _ = api.wait(refs, num_returns=1, timeout=self.hooks.poll_interval_s)
        for ref in ready:
            stage, result, started = self.running.pop(ref)
            seconds = time.monotonic() - started
            try:
                value = api.get(result)
            except Exception as err:
                answer = self.hooks.stage_failed(self.run, stage, err, seconds)
                if isinstance(answer, Retry):
                    self.not_before[stage.id] = time.monotonic() + answer.delay_s
                    self.pending.append(stage)
                else:
                    self.run.values[stage.output] = answer.value
                continue
            self.run.values[stage.output] = self.hooks.after_stage(
                self.run, stage, StageDone(result, value, seconds))


__all__ = ["Execution", "Retry", "StageDone", "StageHooks", "UseValue", "execute_plan", "run_plan"]
