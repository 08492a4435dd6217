"""The scheduler: fires the due runs of the schedules kept in a workflow storage.

Each :meth:`Scheduler.tick` reads every unpaused schedule and works out its due
logical times: the fire times (see :mod:`sluice.libs.workflow.cron`) after the
schedule's last fired logical time (or after its creation, if it never fired)
up to now. Then:

* **Missed runs.** With ``catchup=False`` only the latest due time fires; earlier
  ones (missed while no scheduler ran, or while the schedule was paused) are
  skipped and not recorded. With ``catchup=True`` every due time fires, oldest
  first.
* **Overlap.** While ``max_active_runs`` runs of the schedule are RUNNING, a due
  time does not start a run. With ``catchup=False`` it is recorded with outcome
  ``SKIPPED_OVERLAP`` and the schedule moves past it; with ``catchup=True`` it
  *waits* (nothing recorded, the schedule does not move) and fires, in order,
  once a run ends.
* **Firing.** A fired time is first claimed in storage (``record_fire`` of
  ``(schedule, logical time)`` succeeds once, so two schedulers sharing a storage
  never both fire it), then the schedule moves past it, then the launcher starts
  run ``"{name}@{logical time ISO}"``. Its outcome starts as ``RUNNING`` and
  storage keeps it equal to the run's status; a launcher that raises leaves
  ``LAUNCH_FAILED``. Claiming first means a time is never launched twice; a
  scheduler killed between the claim and the launch leaves that fire RUNNING
  with no run (at most once, not at least once).

:meth:`Scheduler.fire` fires one time off the timeline (``sluice schedule trigger``
and ``sluice backfill``): claimed and launched the same way, but neither
``max_active_runs`` nor the schedule's last fired time is read or moved.

The launcher is ``launcher(schedule, logical_time, workflow_id)``: it builds the
DAG (:func:`load_target` with the schedule's ``params`` and the run's context),
creates the run in storage *before it returns* (with ``schedule_name`` and
``logical_time``, so the overlap count sees it) and runs it in the background.

**Which run is this?** Every run a schedule starts (fired by a tick, triggered, or
backfilled) has a *run context* (:func:`run_context`), as Airflow gives a DAG run
its ``logical_date`` and ``data_interval_start``/``data_interval_end``:

* ``logical_time``: the fire time the run stands for (an aware datetime at the
  schedule's local UTC offset, so ``logical_time.date()`` is the schedule's local
  day);
* ``data_interval``: ``(start, end)``, the half-open period ``[start, end)`` that
  ended when the run fired: ``end`` is the logical time and ``start`` the fire time
  before it (a daily 02:00 run at 2026-11-07 02:00 covers ``[11-06 02:00, 11-07
  02:00)``). A run fires at the end of its interval, so its data is complete, as
  in Airflow, whose run is due at ``data_interval_end``.

A target function receives each of them it names as a parameter (``def
nightly(logical_time, data_interval=None, n=1)``); one naming neither is called
with its params alone. A DAG target (or a DAG that reads an ``InputNode``) reads
them as keyword input (``inp.logical_time``): a scheduled run executes its DAG
with the context as keyword arguments. The context is stored with the run (its
pickled DAG and input), so a resumed run sees the logical time it started with.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sluice.dsl.targets import TargetError, import_target
from sluice.libs.workflow.cron import (
    CronError,
    check_timezone,
    fire_times,
    latest_fire_time,
    next_fire_time,
    parse_cron,
    previous_fire_time,
)
from sluice.libs.workflow.status import WorkflowStatus
from sluice.libs.workflow.storage import ScheduleNotFoundError, WorkflowStorage

__all__ = [
    "LAUNCH_FAILED",
    "SKIPPED_OVERLAP",
    "RUN_CONTEXT",
    "WAITING",
    "Scheduler",
    "TargetError",
    "load_target",
    "run_context",
    "sample_run_context",
    "scheduled_workflow_id",
]

SKIPPED_OVERLAP = "SKIPPED_OVERLAP"
LAUNCH_FAILED = "LAUNCH_FAILED"
# Reported by tick (never stored): a catchup run waiting for a free slot.
WAITING = "WAITING"
# What a scheduled run is told about itself (see the module docstring); not params.
RUN_CONTEXT = ("logical_time", "data_interval")

Launcher = Callable[[dict, datetime, str], Any]
Handled = list[tuple[str, datetime, str]]
_log = logging.getLogger(__name__)


def load_target(target: str, params: dict[str, Any] | None = None,
                context: dict[str, Any] | None = None) -> Any:
    """The DAG of a schedule target ``"module:function"`` called with ``params`` as kwargs,
    plus each entry of the run ``context`` (:func:`run_context`) the function names as a
    parameter (``logical_time``, ``data_interval``).

    The attribute may also be a DAG itself (``"module:dag"``, no params). Raises
    :class:`TargetError` naming the target if it does not import (see
    :func:`sluice.dsl.targets.import_target`), ``params`` name a context entry, the
    call raises, or the result is not a DAG built with ``.bind()``.
    """
    from sluice.dsl.nodes import DAGNode

    params = dict(params or {})
    reserved = sorted(set(params) & set(RUN_CONTEXT))
    if reserved:
        raise TargetError(f"schedule target {target!r}: params {reserved} are set by the "
                          f"scheduler for each run (its logical time and data interval); drop "
                          f"them from the params (`sluice schedule trigger --logical-time` picks "
                          f"the logical time of a manual run)")
    obj = import_target(target, "schedule target", "etl.jobs:nightly (a function returning a DAG)")
    if isinstance(obj, DAGNode):
        if params:
            raise TargetError(f"schedule target {target!r} is a DAG, not a function, so it takes "
                              f"no params (got {sorted(params)}); point it at a function taking "
                              f"them")
        return obj
    if not callable(obj):
        raise TargetError(f"schedule target {target!r} is of type {type(obj).__name__}: give a "
                          f"function returning a DAG, or a DAG")
    wanted = {k: v for k, v in (context or {}).items() if k in _named_parameters(obj)}
    try:
        dag = obj(**params, **wanted)
    except Exception as exc:
        raise TargetError(f"schedule target {target!r} raised {type(exc).__name__}: {exc} when "
                          f"called with params {params!r}"
                          + (f" and {sorted(wanted)}" if wanted else "")) from exc
    if not isinstance(dag, DAGNode):
        raise TargetError(f"schedule target {target!r} returned a value of type "
                          f"{type(dag).__name__}, not a DAG; return the node built with .bind(), "
                          f"e.g. `return step.bind(...)`")
    return dag


def _named_parameters(function: Any) -> set[str]:
    """The parameters ``function`` takes by name (not ``*args``/``**kwargs``: a target's
    ``**kwargs`` gets its params only, as when it was written before the run context)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return set()
    return {p.name for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def run_context(schedule: dict, logical_time: datetime) -> dict[str, Any]:
    """What the run of ``schedule`` (a dict as storage returns it) at ``logical_time`` is told
    about itself: ``logical_time`` and ``data_interval`` (see the module docstring), aware
    datetimes at the schedule's local UTC offset.

    >>> from datetime import datetime, timezone
    >>> daily = {"cron": "0 2 * * *", "timezone": "UTC"}
    >>> ctx = run_context(daily, datetime(2026, 11, 7, 2, tzinfo=timezone.utc))
    >>> ctx["logical_time"].isoformat(), [t.isoformat() for t in ctx["data_interval"]]
    ('2026-11-07T02:00:00+00:00', ['2026-11-06T02:00:00+00:00', '2026-11-07T02:00:00+00:00'])
    """
    _iso(logical_time)  # refuses a naive time
    tz = check_timezone(schedule["timezone"])
    start = previous_fire_time(parse_cron(schedule["cron"]), tz, logical_time)
    end = _local(logical_time, tz)
    return {"logical_time": end, "data_interval": (_local(start, tz), end)}


def _local(instant: datetime, tz: Any) -> datetime:
    """``instant`` at the UTC offset ``tz`` has then: its ``.date()`` and ``isoformat()`` are
    the schedule's local ones, and it compares equal to the same instant in any zone (a
    ZoneInfo time in a repeated hour, fold=1, would not, by PEP 495)."""
    local = instant.astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset
    return local.replace(tzinfo=timezone(offset), fold=0)


def sample_run_context(cron: str, timezone_name: str) -> dict[str, Any]:
    """The run context of a schedule's next fire time from now: what a target is built with
    when the schedule is checked before it is saved."""
    after = datetime.now(timezone.utc)
    schedule = {"cron": cron, "timezone": timezone_name}
    return run_context(schedule, next_fire_time(parse_cron(cron), check_timezone(timezone_name),
                                                after))


def scheduled_workflow_id(name: str, logical_time: datetime) -> str:
    """The workflow id of the run schedule ``name`` fires at ``logical_time``."""
    return f"{name}@{_iso(logical_time)}"


class Scheduler:
    """Fires the due runs of every schedule in ``storage`` (see the module docstring).

    ``clock`` returns the aware current time (default: the system clock in UTC);
    ``launcher`` starts one run (default: ``engine.launch_scheduled(storage, schedule,
    logical_time, workflow_id)``, which the engine provides).
    """

    def __init__(
        self,
        storage: WorkflowStorage | str | os.PathLike[str] | None = None,
        clock: Callable[[], datetime] | None = None,
        launcher: Launcher | None = None,
    ):
        self.storage = storage if isinstance(storage, WorkflowStorage) else WorkflowStorage(storage)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._launcher = launcher if launcher is not None else _default_launcher(self.storage)
        self._reported: set[tuple[str, str]] = set()  # broken schedules already logged once

    def tick(self) -> Handled:
        """Fire every due run now; ``(schedule, logical time, outcome)`` for each one handled.

        Outcomes: ``RUNNING`` (launched), ``SKIPPED_OVERLAP``, ``LAUNCH_FAILED``, or
        ``WAITING`` (a catchup run held back by ``max_active_runs``; not stored).
        """
        now = _aware(self._clock())
        handled: Handled = []
        for schedule in self.storage.list_schedules():
            if not schedule["paused"]:
                handled.extend(self._tick_schedule(schedule, now))
        return handled

    def run_forever(self, stop: threading.Event, poll_s: float = 0.2,
                    on_tick: Callable[[Handled], None] | None = None) -> None:
        """Tick every ``poll_s`` seconds until ``stop`` is set; ``on_tick(handled)`` after each tick.

        A tick that raises (e.g. the database stayed locked too long) is logged and the next
        one tries again: one bad moment does not stop the schedules.
        """
        while not stop.is_set():
            try:
                handled = self.tick()
                if on_tick is not None:
                    on_tick(handled)
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                _log.exception("tick failed; trying again")
            stop.wait(poll_s)

    def fire(self, schedule: dict, logical_time: datetime) -> str | None:
        """Fire ``schedule`` (a dict as storage returns it) at ``logical_time`` now, off its
        timeline; the outcome as :meth:`tick` reports it, or None if that time is recorded
        already (fired, skipped or backfilled before).

        It is claimed and launched as a tick fires a time, but ``max_active_runs`` is not
        consulted and the schedule's last fired time does not move.
        """
        name, iso = schedule["name"], _iso(logical_time)
        workflow_id = scheduled_workflow_id(name, logical_time)
        if not self.storage.record_fire(name, iso, workflow_id, WorkflowStatus.RUNNING.value):
            return None
        return self._launch(schedule, logical_time, workflow_id)

    def _tick_schedule(self, schedule: dict, now: datetime) -> Handled:
        name = schedule["name"]
        try:
            due = self._due(schedule, now)
        except CronError as exc:  # stored before validation existed, or tzdata changed
            if (name, str(exc)) not in self._reported:
                self._reported.add((name, str(exc)))
                _log.warning("schedule %r cannot fire: %s", name, exc)
            return []
        handled = []
        for logical_time in due:
            try:
                outcome = self._fire(schedule, logical_time)
            except ScheduleNotFoundError:
                break  # removed while it fired; the runs it started go on
            if outcome is not None:
                handled.append((name, logical_time, outcome))
            if outcome == WAITING:
                break  # later times wait behind it, in order
        return handled

    def _due(self, schedule: dict, now: datetime) -> list[datetime]:
        spec = parse_cron(schedule["cron"])
        tz = check_timezone(schedule["timezone"])
        last = schedule["last_logical_time"]
        after = (datetime.fromisoformat(last) if last is not None
                 else datetime.fromtimestamp(schedule["created"], timezone.utc))
        if schedule["catchup"]:
            return fire_times(spec, tz, after, now)
        latest = latest_fire_time(spec, tz, after, now)
        return [] if latest is None else [latest]

    def _fire(self, schedule: dict, logical_time: datetime) -> str | None:
        """Handle one due time; its outcome, or None if another scheduler already fired it."""
        name, iso = schedule["name"], _iso(logical_time)
        if self.storage.active_runs(name) >= schedule["max_active_runs"]:
            if schedule["catchup"]:
                return WAITING
            claimed = self.storage.record_fire(name, iso, None, SKIPPED_OVERLAP)
            self._advance(name, iso)
            return SKIPPED_OVERLAP if claimed else None
        workflow_id = scheduled_workflow_id(name, logical_time)
        claimed = self.storage.record_fire(name, iso, workflow_id, WorkflowStatus.RUNNING.value)
        self._advance(name, iso)
        if not claimed:
            return None
        return self._launch(schedule, logical_time, workflow_id)

    def _launch(self, schedule: dict, logical_time: datetime, workflow_id: str) -> str:
        """Launch a claimed fire; RUNNING, or LAUNCH_FAILED (recorded) if the launcher raised."""
        try:
            self._launcher(schedule, logical_time, workflow_id)
        except Exception:  # noqa: BLE001 - one failed launch must not stop the other schedules
            _log.exception("schedule %r: launching %r failed", schedule["name"], workflow_id)
            self.storage.set_fire_outcome(schedule["name"], _iso(logical_time), LAUNCH_FAILED)
            return LAUNCH_FAILED
        return WorkflowStatus.RUNNING.value

    def _advance(self, name: str, iso: str) -> None:
        """Move the schedule past ``iso`` (never back: another scheduler may be further on)."""
        current = self.storage.get_schedule(name)
        if current is not None and (current["last_logical_time"] is None
                                    or datetime.fromisoformat(current["last_logical_time"])
                                    < datetime.fromisoformat(iso)):
            self.storage.set_last_logical_time(name, iso)


def _default_launcher(storage: WorkflowStorage) -> Launcher:
    """The workflow API's launcher, bound to ``storage`` (imported here, not at module load:
    it pulls in the sluice runtime)."""
    api = importlib.import_module("sluice.libs.workflow.api")
    return functools.partial(api.launch_scheduled, storage)


def _iso(instant: datetime) -> str:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise TypeError(f"logical time {instant!r} is naive; give an aware datetime")
    return instant.astimezone(timezone.utc).isoformat()


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise TypeError(f"the scheduler's clock gave a naive datetime {instant!r}; return an aware "
                        f"one, e.g. datetime.now(timezone.utc)")
    return instant
