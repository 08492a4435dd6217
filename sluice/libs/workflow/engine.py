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
from dataclasses import dataclass
from typing import Any

import sluice
from sluice.compiler.ir import Op, OpKind
from sluice.compiler.plan import Plan, Stage
from sluice.compiler.runner import Execution, Retry, StageDone, StageHooks, UseValue, run_plan
from sluice.libs.workflow.status import WorkflowStatus

_DEFAULTS = {"max_retries": 3, "retry_delay_s": 0.0, "backoff": 1.0, "catch_exceptions": False,
             "cache": False}


class WorkflowCancelledError(Exception):
    """The run was cancelled (``workflow.cancel``) while it ran."""


class WorkflowError(Exception):
    """A step failed after its retries; the message names the step and carries its error."""


@dataclass
class _Step:
    """One step's options and the state of its current attempt."""

    op: Op
    options: dict[str, Any]
    attempt: int = 0
    cache_key: str | None = None


def step_options(op: Op) -> dict[str, Any]:
    """A step's workflow options (retries, delay, backoff, catch_exceptions, cache), defaults filled."""
    return {**_DEFAULTS, **{k: v for k, v in op.options if k in _DEFAULTS}}


def execute(storage: Any, workflow_id: str, plan: Plan, args: tuple, kwargs: dict) -> Any:
    """Run (or go on running) ``workflow_id``; its output. Marks the run's final status: an
    interrupted run (``KeyboardInterrupt``, e.g. Ctrl-C) is RESUMABLE, not FAILED."""
    if not sluice.is_initialized():
        sluice.init()
    try:
        run = run_plan(plan, DurableSteps(storage, workflow_id), args, kwargs)
        outs = [_value(v) for v in run.outputs()]
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
    return outs if plan.multi_output else outs[0]


def _value(value: Any) -> Any:
    return sluice.get(value) if isinstance(value, sluice.ObjectRef) else value


class DurableSteps(StageHooks):
    """The Plan runner's hooks for a workflow: every call stage is a checkpointed step.

    A step whose checkpoint exists (an earlier, interrupted run of this id) or
    whose cached value is known (``cache=True``) does not run; a step that ran is
    checkpointed before any reader starts; a failed step is retried after
    ``retry_delay_s * backoff ** (attempt - 1)`` seconds, up to ``max_retries``
    times, then fails the run or (``catch_exceptions``) hands ``(None, error)``
    on; a cancelled run stops at the next poll.
    """

    awaits_results = True

    def __init__(self, storage: Any, workflow_id: str):
        self.storage, self.workflow_id = storage, workflow_id
        self.steps: dict[str, _Step] = {}

    def begin(self, run: Execution) -> None:
        for stage in run.plan.stages:
            if stage.kind in (OpKind.ACTOR, OpKind.METHOD):
                raise ValueError(f"workflow node {stage.name} is an actor call; workflow steps are "
                                 "function nodes (an actor's state is not checkpointed): use a "
                                 "@sluice.remote function")
            if stage.kind is OpKind.CALL:
                op = stage.ops[0]
                self.steps[stage.id] = _Step(op, step_options(op))

    def poll(self, run: Execution) -> None:
        if self.storage.get_run(self.workflow_id)["status"] == WorkflowStatus.CANCELED.value:
            raise WorkflowCancelledError(f"workflow {self.workflow_id!r} was cancelled")

    def task_options(self, run: Execution, stage: Stage, options: dict[str, Any]) -> dict[str, Any]:
        # The runner retries a step itself (with its delay); the runtime must not.
        return {**options, "max_retries": 0, "retry_exceptions": False}

    def before_stage(self, run: Execution, stage: Stage) -> UseValue | None:
        """Reuse a checkpoint (or the cross-run cache), or mark the step started."""
        step = self.steps.get(stage.id)
        if step is None:  # the input and its selectors
            return None
        step_id = step.op.id
        if self.storage.has_checkpoint(self.workflow_id, step_id):
            return UseValue(self.storage.load_checkpoint(self.workflow_id, step_id))
        if step.options["cache"]:
            step.cache_key = cache_key(step.op, tuple(_value(v) for v in run.inputs(stage)))
            hit, value = self.storage.cache_lookup(step.cache_key)
            if hit:
                self.storage.step_started(self.workflow_id, step_id, step.op.name)
                self.storage.step_succeeded(self.workflow_id, step_id, value, 0.0, step.cache_key)
                return UseValue(value)
        step.attempt = self.storage.step_started(self.workflow_id, step_id, step.op.name)
        return None

    def after_stage(self, run: Execution, stage: Stage, done: StageDone) -> Any:
        """Checkpoint a finished step; readers get its ref (or the value that replaced it)."""
        step = self.steps.get(stage.id)
        if step is None:
            return done.result
        if step.options["catch_exceptions"]:
            value = (done.value, None)
            self._succeeded(step, value, done.seconds)
            return value
        self._succeeded(step, done.value, done.seconds)
        return done.result

    def stage_failed(self, run: Execution, stage: Stage, error: Exception,
                     seconds: float) -> UseValue | Retry:
        """Retry after the step's delay, hand the error on (catch_exceptions), or fail the run."""
        step = self.steps[stage.id]
        step_id = step.op.id
        cause = getattr(error, "cause", None) or error   # a task's error carries the original
        text = f"{type(cause).__name__}: {cause}"
        self.storage.step_failed(self.workflow_id, step_id, text, seconds)
        if step.attempt <= step.options["max_retries"]:
            return Retry(step.options["retry_delay_s"] * step.options["backoff"] ** (step.attempt - 1))
        if not step.options["catch_exceptions"]:
            raise WorkflowError(f"workflow {self.workflow_id!r}: step {step.op.name} ({step_id}) "
                                f"failed after {step.attempt} attempt(s): {text}") from error
        value = (None, cause)
        self._succeeded(step, value, seconds)
        return UseValue(value)

    def _succeeded(self, step: _Step, value: Any, seconds: float) -> None:
        self.storage.step_succeeded(self.workflow_id, step.op.id, value, seconds, step.cache_key)
        if step.cache_key is not None:
            self.storage.cache_store(step.cache_key, value)


def cache_key(op: Op, inputs: tuple) -> str:
    """What a cached step's output depends on: its code, arguments and options (the op's
    content) and the values it reads."""
    from sluice.store import serialization

    h = hashlib.blake2b(op.content.encode(), digest_size=16)
    for value in inputs:
        h.update(hashlib.blake2b(serialization.dumps(value), digest_size=16).digest())
    return h.hexdigest()
