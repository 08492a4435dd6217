"""The public calls of ``sluice.workflow``: run, resume, look up, cancel, delete."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import cloudpickle

import sluice
from sluice.libs.workflow import engine
from sluice.libs.workflow.database import STORAGE_ENV
from sluice.libs.workflow.status import WorkflowStatus
from sluice.libs.workflow.storage import StorageNotFoundError, WorkflowStorage


def _storage(storage: Any, create: bool = True) -> WorkflowStorage:
    """The storage ``storage`` names; a call that only reads or changes what is there passes
    ``create=False``, so a mistyped folder raises instead of becoming an empty storage."""
    if isinstance(storage, WorkflowStorage):
        return storage
    return WorkflowStorage(storage, create=create)


def _plan(dag: Any) -> Any:
    from sluice.dsl.nodes import DAGNode

    if not isinstance(dag, DAGNode):
        raise TypeError(f"workflow.run takes a DAG built with .bind(), not {type(dag).__name__} "
                        f"{dag!r:.60}; e.g. workflow.run(f.bind(g.bind(1)))")
    return sluice.compile(dag, optimize=False)  # one step per node: each is checkpointed


def run(dag: Any, *args: Any, workflow_id: str | None = None, storage: Any = None, **kwargs: Any) -> Any:
    """Run ``dag`` durably and return its output; every step's output is checkpointed.

    ``workflow_id`` names the run (default: a new unique id); a run that dies can be
    resumed with ``resume(workflow_id)``. ``args``/``kwargs`` are the DAG's input.
    """
    store = _storage(storage)
    workflow_id = workflow_id or f"workflow-{uuid.uuid4().hex[:12]}"
    plan = _plan(dag)
    store.create_run(workflow_id, cloudpickle.dumps((plan, args, kwargs)))
    return engine.execute(store, workflow_id, plan, args, kwargs)


def run_async(dag: Any, *args: Any, workflow_id: str | None = None, storage: Any = None,
              **kwargs: Any) -> Any:
    """Like ``run``, but return at once an ObjectRef of the output (the run goes on in a task)."""
    store = _storage(storage)
    workflow_id = workflow_id or f"workflow-{uuid.uuid4().hex[:12]}"
    plan = _plan(dag)
    store.create_run(workflow_id, cloudpickle.dumps((plan, args, kwargs)))
    return _driver.remote(str(store.folder), workflow_id, False)


def resume(workflow_id: str, storage: Any = None) -> Any:
    """Run the steps of ``workflow_id`` that have no checkpoint yet; its output.

    Works on a RESUMABLE run (its driver died), and on a FAILED or CANCELED one (its
    finished steps are kept; the others run again)."""
    store = _storage(storage, create=False)
    plan, args, kwargs = cloudpickle.loads(store.claim_run(workflow_id))
    return engine.execute(store, workflow_id, plan, args, kwargs)


def resume_async(workflow_id: str, storage: Any = None) -> Any:
    """Like ``resume``, returning an ObjectRef of the output at once."""
    store = _storage(storage, create=False)
    store.claim_run(workflow_id)
    return _driver.remote(str(store.folder), workflow_id, True)


@sluice.remote(num_cpus=0, max_retries=0)
def _driver(folder: str, workflow_id: str, resumed: bool) -> Any:
    """A run driven from inside a task (``run_async``): steps are its nested tasks."""
    store = WorkflowStorage(folder)
    # This process drives the run now: if it dies, the run shows RESUMABLE (not if it was
    # cancelled in between: then it stays CANCELED and nothing runs).
    if not store.set_status(workflow_id, WorkflowStatus.RUNNING, expected=WorkflowStatus.RUNNING):
        raise engine.WorkflowCancelledError(f"workflow {workflow_id!r} was cancelled before it started")
    plan, args, kwargs = cloudpickle.loads(store.get_run(workflow_id)["dag"])
    return engine.execute(store, workflow_id, plan, args, kwargs)


def launch_scheduled(storage: WorkflowStorage, schedule: dict, logical_time: dt.datetime,
                     workflow_id: str) -> Any:
    """Start one fired run of ``schedule`` (the Scheduler's launcher): registered before this
    returns, driven by a task; the ObjectRef of its output."""
    _create_scheduled(storage, schedule, logical_time, workflow_id, None)
    return _driver.remote(str(storage.folder), workflow_id, False)


def run_scheduled(storage: WorkflowStorage, schedule: dict, logical_time: dt.datetime,
                  workflow_id: str, params: dict | None = None) -> Any:
    """Like :func:`launch_scheduled`, but drive the run in this process; its output.

    ``params`` replace the schedule's own (a trigger's overrides). Raises as :func:`run` does.
    """
    plan, context = _create_scheduled(storage, schedule, logical_time, workflow_id, params)
    return engine.execute(storage, workflow_id, plan, (), context)


def _create_scheduled(storage: WorkflowStorage, schedule: dict, logical_time: dt.datetime,
                      workflow_id: str, params: dict | None) -> tuple[Any, dict]:
    """Create the run a schedule fired (RUNNING, with its schedule and logical time); its Plan
    and run context.

    The target is built for this run (it receives the logical time and data interval it
    names), and the DAG executes with the context as keyword input; both are stored with
    the run, so a resume replays the same logical time.
    """
    from sluice.libs.workflow.scheduler import load_target, run_context

    context = run_context(schedule, logical_time)
    if params is None:
        params = schedule.get("params") or {}
    plan = _plan(load_target(schedule["target"], params, context))
    storage.create_run(workflow_id, cloudpickle.dumps((plan, (), context)),
                       schedule_name=schedule["name"],
                       logical_time=logical_time.astimezone(dt.timezone.utc).isoformat())
    return plan, context


def get_status(workflow_id: str, storage: Any = None) -> WorkflowStatus:
    """RUNNING, SUCCESSFUL, FAILED, RESUMABLE (its driver died) or CANCELED."""
    return _storage(storage, create=False).status(workflow_id)


def get_output(workflow_id: str, storage: Any = None) -> Any:
    """The output of a finished run (from its checkpoints)."""
    store = _storage(storage, create=False)
    status = store.status(workflow_id)
    if status is not WorkflowStatus.SUCCESSFUL:
        raise ValueError(f"workflow {workflow_id!r} is {status.value}, so it has no output yet; "
                         "resume(...) it or wait for it")
    plan, _, _ = cloudpickle.loads(store.get_run(workflow_id)["dag"])
    outs = [store.load_checkpoint(workflow_id, o) for o in plan.outputs]
    return outs if plan.multi_output else outs[0]


def list_all(status_filter: Any = None, storage: Any = None) -> list[tuple[str, WorkflowStatus]]:
    """(workflow id, status) of every run, or of those with a status in ``status_filter``.

    With no ``storage`` and none at the default folder yet, there are no runs: ``[]``, as in
    Ray. A ``storage`` given explicitly must exist (a mistyped folder raises).
    """
    try:
        return _storage(storage, create=False).list_runs(status_filter)
    except StorageNotFoundError:
        if storage is None and not os.environ.get(STORAGE_ENV):
            return []
        raise


def cancel(workflow_id: str, storage: Any = None) -> None:
    """Stop a running (or resumable) run: its driver stops at the next step boundary; it shows
    CANCELED. A finished run cannot be cancelled."""
    store = _storage(storage, create=False)
    status = store.status(workflow_id)
    if status not in (WorkflowStatus.RUNNING, WorkflowStatus.RESUMABLE) or not store.set_status(
            workflow_id, WorkflowStatus.CANCELED, expected=WorkflowStatus.RUNNING):
        raise ValueError(f"workflow {workflow_id!r} is {store.status(workflow_id).value}; only a "
                         "RUNNING or RESUMABLE run can be cancelled")


def delete(workflow_id: str, storage: Any = None) -> None:
    """Forget a run: its metadata and its checkpoints."""
    _storage(storage, create=False).delete_run(workflow_id)


def schedule(name: str, target: str, cron: str, timezone: str = "UTC", params: dict | None = None,
             catchup: bool = False, max_active_runs: int = 1, storage: Any = None) -> None:
    """Save a schedule: ``target`` (``"module:function"`` returning a DAG, or a DAG) runs at
    every ``cron`` time (5 fields, or 6 with seconds first) in ``timezone``.

    A target function naming a ``logical_time`` parameter is called with each run's
    logical time (an aware datetime at ``timezone``'s offset), one naming ``data_interval`` with
    ``(start, end)``, the period since the previous fire time, ``end`` excluded (see
    :mod:`sluice.libs.workflow.scheduler`); ``params`` are its other keyword arguments.

    A ``Scheduler`` (``sluice scheduler``) fires the runs. Missed runs while no scheduler
    ran are skipped unless ``catchup``; a run due while ``max_active_runs`` of this
    schedule are running is skipped. Bad cron, timezone or target are refused here.
    """
    from sluice.libs.workflow.cron import check_timezone, parse_cron
    from sluice.libs.workflow.scheduler import load_target, sample_run_context

    if not isinstance(name, str) or not name:
        raise ValueError(f"schedule name {name!r}: give a non-empty string")
    parse_cron(cron)
    check_timezone(timezone)
    if isinstance(max_active_runs, bool) or not isinstance(max_active_runs, int) or max_active_runs < 1:
        raise ValueError(f"max_active_runs={max_active_runs!r}: give an int >= 1")
    # Built as its next run would build it, so a target that reads its logical time is checked.
    load_target(target, params or {}, sample_run_context(cron, timezone))
    _storage(storage).add_schedule(name, target, cron, timezone, params or {}, bool(catchup),
                                   max_active_runs)
