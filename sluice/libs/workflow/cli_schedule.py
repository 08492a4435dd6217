"""``sluice schedule`` (add, list, pause, resume, remove, trigger) and ``sluice backfill``:
a schedule's records, and fires driven in this process."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from typing import Any

from sluice.libs.workflow.cli_common import (
    UsageError,
    importable_cwd,
    open_storage,
    parse_instant,
    parse_params,
    print_fire,
    print_table,
    range_end,
    runtime,
    usage_errors,
    utc_iso,
)
from sluice.libs.workflow.status import WorkflowStatus


def schedule_add(args: argparse.Namespace) -> int:
    """``sluice schedule add``: save a schedule, print its next fire time."""
    from sluice.libs.workflow import api
    from sluice.libs.workflow.cron import next_fire_time, parse_cron

    importable_cwd()
    store = open_storage(args, create=True)
    try:
        api.schedule(args.name, args.target, args.cron, timezone=args.timezone,
                     params=parse_params(args.param), catchup=args.catchup,
                     max_active_runs=args.max_active_runs, storage=store)
    except usage_errors() as exc:
        raise UsageError(str(exc)) from None
    upcoming = next_fire_time(parse_cron(args.cron), args.timezone, datetime.now(timezone.utc))
    print(f"added schedule {args.name!r}: {args.target} at {args.cron!r} ({args.timezone}); "
          f"next run {upcoming.isoformat()}")
    return 0


def schedule_list(args: argparse.Namespace) -> int:
    """``sluice schedule list``: the schedules and each one's last fire."""
    store = open_storage(args)
    rows = []
    for s in store.list_schedules():
        fires = store.fires(s["name"])
        last = f"{fires[-1]['logical_time']} {fires[-1]['outcome']}" if fires else "never"
        rows.append((s["name"], s["cron"], s["timezone"], s["target"],
                     "yes" if s["paused"] else "no", last))
    if not rows:
        print(f"no schedules in {store.folder}; add one with `sluice schedule add`")
        return 0
    print_table(("NAME", "CRON", "TIMEZONE", "TARGET", "PAUSED", "LAST FIRED"), rows)
    return 0


def schedule_set_paused(paused: bool) -> Any:
    """The handler of ``sluice schedule pause`` (``paused``) or ``resume``."""
    def handler(args: argparse.Namespace) -> int:
        store = open_storage(args)
        try:
            store.set_paused(args.name, paused)
        except usage_errors() as exc:
            raise UsageError(str(exc)) from None
        print(f"{'paused' if paused else 'resumed'} schedule {args.name!r}")
        return 0
    return handler


def schedule_remove(args: argparse.Namespace) -> int:
    """``sluice schedule remove``: a schedule and its fire records (its runs stay)."""
    store = open_storage(args)
    try:
        store.remove_schedule(args.name)
    except usage_errors() as exc:
        raise UsageError(str(exc)) from None
    print(f"removed schedule {args.name!r}")
    return 0


def schedule_trigger(args: argparse.Namespace) -> int:
    """``sluice schedule trigger``: fire a schedule now (or at ``--logical-time``) here."""
    from sluice.libs.workflow.cron import check_timezone

    store = open_storage(args)
    schedule = _get_schedule(store, args.name)
    params = {**schedule["params"], **parse_params(args.param)}
    logical_time = datetime.now(timezone.utc)
    if args.logical_time is not None:
        try:
            tz = check_timezone(schedule["timezone"])
        except ValueError as exc:
            raise UsageError(f"schedule {args.name!r} cannot be triggered: {exc}") from None
        logical_time = parse_instant(args.logical_time, "--logical-time", tz)
        taken = {f["logical_time"]: f for f in store.fires(args.name)}.get(utc_iso(logical_time))
        if taken is not None:
            raise UsageError(f"schedule {args.name!r} has a fire at {utc_iso(logical_time)} already "
                             f"({taken['outcome']}, workflow {taken['workflow_id'] or '-'}); "
                             f"resume that run, or give another --logical-time")
    _check_target(schedule, params, logical_time)
    with runtime():
        succeeded, output = _FireHere(store, params)(schedule, logical_time)
    if succeeded:
        print(output)
        return 0
    return 1


def backfill(args: argparse.Namespace) -> int:
    """``sluice backfill``: fire a schedule's times in ``[--start, --end]`` not recorded yet."""
    from sluice.libs.workflow.cron import check_timezone, fire_times, parse_cron

    store = open_storage(args)
    schedule = _get_schedule(store, args.name)
    try:
        spec, tz = parse_cron(schedule["cron"]), check_timezone(schedule["timezone"])
    except ValueError as exc:
        raise UsageError(f"schedule {args.name!r} cannot be backfilled: {exc}") from None
    start = parse_instant(args.start, "--start", tz)
    end, end_included = range_end(args.end, tz)
    if start > end or (start == end and not end_included):
        raise UsageError(f"--start {args.start} is after --end {args.end}; give START <= END")
    # fire_times covers (after, until]; fire times are whole seconds, so shifting an end by a
    # microsecond includes START, and excludes an END that is the day after a date.
    until = end if end_included else end - timedelta(microseconds=1)
    due = fire_times(spec, tz, start - timedelta(microseconds=1), until)
    recorded = {f["logical_time"] for f in store.fires(args.name)}
    todo = [t for t in due if utc_iso(t) not in recorded]
    failed = 0
    if todo:
        _check_target(schedule, schedule["params"], todo[0])
        fire = _FireHere(store, schedule["params"])
        with runtime():
            for logical_time in todo:
                succeeded, _ = fire(schedule, logical_time)
                failed += not succeeded
    span = f"[{utc_iso(start)}, {utc_iso(end)}" + ("]" if end_included else ")")
    print(f"backfilled {args.name!r}: {len(due)} fire time(s) in {span}, {len(todo)} ran, "
          f"{len(due) - len(todo)} already recorded, {failed} not successful")
    return 1 if failed else 0


def _get_schedule(store: Any, name: str) -> dict:
    schedule = store.get_schedule(name)
    if schedule is None:
        raise UsageError(f"no schedule {name!r} in {store.folder}; `sluice schedule list` shows "
                         f"the ones there are (check --storage or $SLUICE_WORKFLOW_STORAGE)")
    return schedule


def _check_target(schedule: dict, params: dict, logical_time: datetime) -> None:
    """Build the target as the run at ``logical_time`` will (it may read its logical time):
    one that does not import or build is a usage error, before any run is recorded."""
    from sluice.libs.workflow.scheduler import load_target, run_context

    importable_cwd()
    try:
        load_target(schedule["target"], params, run_context(schedule, logical_time))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class _FireHere:
    """Fires of ``trigger`` and ``backfill``: each claimed and launched by the scheduler
    (:meth:`Scheduler.fire`, off the schedule's timeline), its run driven in this process,
    its target built for its own logical time."""

    def __init__(self, store: Any, params: dict):
        from sluice.libs.workflow.scheduler import Scheduler

        self.store, self.params = store, params
        self.scheduler = Scheduler(store, launcher=self._drive)
        # How the run last driven ended: (its outcome, its output, the error to print).
        self.ended: tuple[str, Any, str | None] | None = None

    def __call__(self, schedule: dict, logical_time: datetime) -> tuple[bool, Any]:
        """Fire ``schedule`` at ``logical_time`` and print its line; (succeeded, its output).
        A time recorded already (a scheduler got there first) is not run, and not a failure."""
        from sluice.libs.workflow.scheduler import scheduled_workflow_id

        name, iso = schedule["name"], utc_iso(logical_time)
        workflow_id = scheduled_workflow_id(name, logical_time)
        self.ended = None
        outcome = self.scheduler.fire(schedule, logical_time)
        if outcome is None:
            print_fire(name, iso, "ALREADY_RECORDED", workflow_id)
            return True, None
        if self.ended is None:  # the launch itself failed (the scheduler logged why)
            print_fire(name, iso, outcome, workflow_id)
            return False, None
        outcome, output, error = self.ended
        print_fire(name, iso, outcome, workflow_id, error=error)
        return outcome == WorkflowStatus.SUCCESSFUL.value, output

    def _drive(self, schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        """The scheduler's launcher here: create the run, drive it, keep how it ended."""
        from sluice.libs.workflow import api
        from sluice.libs.workflow.scheduler import LAUNCH_FAILED
        from sluice.libs.workflow.storage import WorkflowExistsError

        try:
            output = api.run_scheduled(self.store, schedule, logical_time, workflow_id,
                                       self.params)
        except WorkflowExistsError as exc:  # a run of an earlier schedule of the same name
            status = self.store.status(workflow_id)
            self.store.set_fire_outcome(schedule["name"], utc_iso(logical_time), status.value)
            self.ended = (status.value, None, f"not run again: {exc}")
        except KeyboardInterrupt:  # the engine stored the run RESUMABLE
            print_fire(schedule["name"], utc_iso(logical_time),
                        self.store.status(workflow_id).value, workflow_id)
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the run's outcome
            error = f"{type(exc).__name__}: {exc}"
            if self.store.get_run(workflow_id) is None:  # its target did not build for this time
                self.store.set_fire_outcome(schedule["name"], utc_iso(logical_time), LAUNCH_FAILED)
                self.ended = (LAUNCH_FAILED, None, error)
            else:
                self.ended = (self.store.status(workflow_id).value, None, error)
        else:
            self.ended = (WorkflowStatus.SUCCESSFUL.value, output, None)
