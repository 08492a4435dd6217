"""Durable execution: a DAG run step by step, each step's output checkpointed before use.

A workflow is a ``.bind()`` DAG of function nodes compiled without fusion, so each
node is one step (a stage of one op). A step's id is its op's content id: the same
DAG gives the same step ids in every process, which is what lets ``resume`` find
the checkpoints of an earlier, killed run and re-execute only the steps without one.

Order of truth: a step's checkpoint file is written (atomically) *before* its row is
marked successful, and a step reads its inputs only from finished steps, so a
crash at any point leaves a state that resumes correctly.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import sluice
from sluice.compiler.ir import Op, OpKind
from sluice.compiler.plan import Plan, Stage
from sluice.compiler.run import DAGInput, StageFunction
from sluice.executor import api
from sluice.executor.calls import dumps_function
from sluice.libs.workflow.status import WorkflowStatus

_DEFAULTS = {"max_retries": 3, "retry_delay_s": 0.0, "backoff": 1.0, "catch_exceptions": False,
             "cache": False}


class WorkflowCancelledError(Exception):
    """The run was cancelled (``workflow.cancel``) while it ran."""


class WorkflowError(Exception):
    """A step failed after its retries; the message names the step and carries its error."""


@dataclass
class _Step:
    stage: Stage
    op: Op
    options: dict
    attempt: int = 0
    started: float = 0.0
    not_before: float = 0.0          # a retry waits until this clock time
    cache_key: str | None = None
    deps: list[str] = field(default_factory=list)


def plan_steps(plan: Plan) -> list[_Step]:
    """The call stages of an unfused Plan as steps; a ValueError for actor nodes."""
    steps = []
    for stage in plan.stages:
        if stage.kind in (OpKind.ACTOR, OpKind.METHOD):
            raise ValueError(f"workflow node {stage.name} is an actor call; workflow steps are "
                             "function nodes (an actor's state is not checkpointed): use a "
                             "@sluice.remote function")
        if stage.kind is OpKind.CALL:
            op = stage.ops[0]
            options = {**_DEFAULTS, **{k: v for k, v in op.options if k in _DEFAULTS}}
            steps.append(_Step(stage, op, options, deps=list(stage.inputs)))
    return steps


def execute(storage: Any, workflow_id: str, plan: Plan, args: tuple, kwargs: dict) -> Any:
    """Run (or go on running) ``workflow_id``; its output. Marks the run's final status: an
    interrupted run (``KeyboardInterrupt``, e.g. Ctrl-C) is RESUMABLE, not FAILED."""
    try:
        output = _Run(storage, workflow_id, plan, args, kwargs).run()
    except WorkflowCancelledError:
        raise
    except KeyboardInterrupt as err:
        # Nothing failed: the finished steps are checkpointed and resume() goes on from them.
        storage.set_status(workflow_id, WorkflowStatus.RESUMABLE,
                           error=f"{type(err).__name__}: {err}", expected=WorkflowStatus.RUNNING)
        raise
    except BaseException as err:
        storage.set_status(workflow_id, WorkflowStatus.FAILED, error=f"{type(err).__name__}: {err}")
        raise
    # Not over a cancel that came in as the last step finished.
    storage.set_status(workflow_id, WorkflowStatus.SUCCESSFUL, expected=WorkflowStatus.RUNNING)
    return output


class _Run:
    """The state of one execution of a workflow in this process."""

    def __init__(self, storage: Any, workflow_id: str, plan: Plan, args: tuple, kwargs: dict):
        self.storage, self.workflow_id, self.plan = storage, workflow_id, plan
        self.rt = api.runtime() if sluice.is_initialized() else (sluice.init() or api.runtime())
        self.functions = dict(plan.functions)
        self.values: dict[str, Any] = {}      # op id -> a value, or the ObjectRef of one
        self.dag_input = DAGInput(args, kwargs)
        self.registered: dict[str, tuple] = {}

    def run(self) -> Any:
        for stage in self.plan.stages:
            if stage.kind is OpKind.INPUT:
                self.values[stage.output] = self.dag_input.value()
            elif stage.kind is OpKind.SELECT:
                self.values[stage.output] = self.dag_input.select(stage.ops[0].key)
        waiting = plan_steps(self.plan)
        running: dict[Any, _Step] = {}
        while waiting or running:
            self._check_cancelled(running)
            now = time.monotonic()
            for step in [s for s in waiting if self._ready(s, now)]:
                waiting.remove(step)
                ref = self._start(step)
                if ref is not None:
                    running[ref] = step
            if not running:
                if waiting:  # only retries waiting for their delay
                    time.sleep(max(0.0, min(s.not_before for s in waiting) - time.monotonic()))
                continue
            ready, _ = sluice.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                step = running.pop(ref)
                retry = self._finish(step, ref)
                if retry:
                    waiting.append(step)
        outs = [self._value(o) for o in self.plan.outputs]
        return outs if self.plan.multi_output else outs[0]

    # -- steps ------------------------------------------------------------------------------
    def _ready(self, step: _Step, now: float) -> bool:
        return step.not_before <= now and all(d in self.values for d in step.deps)

    def _start(self, step: _Step) -> Any:
        """Reuse a checkpoint (or the cross-run cache), or submit the step; its ref or None."""
        step_id = step.op.id
        if self.storage.has_checkpoint(self.workflow_id, step_id):
            self.values[step_id] = self.storage.load_checkpoint(self.workflow_id, step_id)
            return None
        inputs = tuple(self._value(d) if step.options["cache"] else self.values[d] for d in step.deps)
        if step.options["cache"]:
            step.cache_key = cache_key(step.op, inputs)
            hit, value = self.storage.cache_lookup(step.cache_key)
            if hit:
                self.storage.step_started(self.workflow_id, step_id, step.op.name)
                self.storage.step_succeeded(self.workflow_id, step_id, value, 0.0, step.cache_key)
                self.values[step_id] = value
                return None
        step.attempt = self.storage.step_started(self.workflow_id, step_id, step.op.name)
        step.started = time.monotonic()
        fn_id, data, options = self._function(step)
        return self.rt.submit_task(fn_id, data, options["name"], inputs, {}, options)[0]

    def _finish(self, step: _Step, ref: Any) -> bool:
        """Checkpoint a finished step, or handle its error; True when it should run again."""
        step_id = step.op.id
        duration = time.monotonic() - step.started
        try:
            value = sluice.get(ref)
        except Exception as err:
            retries = step.options["max_retries"]
            cause = getattr(err, "cause", None) or err   # a task's error carries the original
            text = f"{type(cause).__name__}: {cause}"
            self.storage.step_failed(self.workflow_id, step_id, text, duration)
            if step.attempt <= retries:
                delay = step.options["retry_delay_s"] * step.options["backoff"] ** (step.attempt - 1)
                step.not_before = time.monotonic() + delay
                return True
            if not step.options["catch_exceptions"]:
                raise WorkflowError(f"workflow {self.workflow_id!r}: step {step.op.name} ({step_id}) "
                                    f"failed after {step.attempt} attempt(s): {text}") from err
            value = (None, cause)
        else:
            if step.options["catch_exceptions"]:
                value = (value, None)
        self.storage.step_succeeded(self.workflow_id, step_id, value, duration, step.cache_key)
        # Readers get the checkpointed value itself when the step's output was replaced.
        self.values[step_id] = value if step.options["catch_exceptions"] else ref
        if step.cache_key is not None:
            self.storage.cache_store(step.cache_key, value)
        return False

    def _value(self, op_id: str) -> Any:
        value = self.values[op_id]
        return sluice.get(value) if isinstance(value, sluice.ObjectRef) else value

    def _function(self, step: _Step) -> tuple:
        if step.stage.id not in self.registered:
            op = step.op
            needed = {op.fn_id: self.functions[op.fn_id]}
            fn = StageFunction(step.stage.ops, step.stage.inputs, needed, False)
            fn_id, data = dumps_function(fn, f"workflow step {op.name}")
            resources = dict(step.stage.resources)
            options = {"num_returns": 1, "num_cpus": resources.pop("CPU", 0),
                       "num_gpus": resources.pop("GPU", 0), "resources": resources or None,
                       "max_retries": 0, "retry_exceptions": False, "name": op.name,
                       "_key": step.stage.resources}
            self.registered[step.stage.id] = (fn_id, data, options)
        return self.registered[step.stage.id]

    def _check_cancelled(self, running: dict) -> None:
        if self.storage.get_run(self.workflow_id)["status"] == WorkflowStatus.CANCELED.value:
            for ref in running:
                sluice.cancel(ref)
            raise WorkflowCancelledError(f"workflow {self.workflow_id!r} was cancelled")


def cache_key(op: Op, inputs: tuple) -> str:
    """What a cached step's output depends on: its code, arguments and options (the op's
    content) and the values it reads."""
    from sluice.store import serialization

    h = hashlib.blake2b(op.content.encode(), digest_size=16)
    for value in inputs:
        h.update(hashlib.blake2b(serialization.dumps(value), digest_size=16).digest())
    return h.hexdigest()
