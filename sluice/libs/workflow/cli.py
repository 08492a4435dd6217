"""The command line of ``sluice.workflow``: ``sluice scheduler``, ``schedule``, ``backfill``
and ``workflow``.

``sluice/cli.py`` adds these subcommands with :func:`add_parsers` and hands a parsed
command line to :func:`run`, which prints a command's error as one line on stderr
and returns exit status 2 (1 when a run it drove failed).

Every line about a fired run reads ``SCHEDULE  LOGICAL-TIME  OUTCOME  WORKFLOW-ID``
(fields separated by two spaces, logical times in UTC ISO 8601), so the daemon's
log, ``trigger`` and ``backfill`` can be read the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from sluice.libs.workflow.status import WorkflowStatus

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("scheduler", "schedule", "backfill", "workflow")


class UsageError(Exception):
    """A command line the user must fix; :func:`run` prints it and returns status 2."""
_STORAGE_HELP = ("the workflow storage folder (default: $SLUICE_WORKFLOW_STORAGE, else "
                 "~/.sluice/workflows)")
_PARAM_HELP = ("a keyword argument of the target, KEY=VALUE; VALUE is read as JSON when it parses "
               "(3, 2.5, true, null, [1, 2], \"text\"), else taken as a string; repeatable")
_SCHEDULER_DESCRIPTION = """\
Run the scheduler in the foreground: every POLL seconds it fires the due runs of
every unpaused schedule in the storage (see `sluice schedule add`). Each run is
driven by a task of this process; one line per fired run goes to stdout
(SCHEDULE  LOGICAL-TIME  OUTCOME  WORKFLOW-ID), and a second one when a run it
started ends. SIGTERM or SIGINT (Ctrl-C) stops it cleanly: it stops firing, shuts
its runtime down, and the runs still in flight are left RESUMABLE (a line each):
`sluice workflow resume ID` continues one from its checkpoints. Exit status 0."""


# ----------------------------------------------------------------------------- parsers

def add_parsers(sub: Any) -> None:
    """Add the ``scheduler``, ``schedule``, ``backfill`` and ``workflow`` subcommands to
    ``sub`` (the subparsers action of the ``sluice`` parser)."""
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--storage", metavar="DIR", help=_STORAGE_HELP)

    daemon = sub.add_parser("scheduler", parents=[storage], help="run the workflow scheduler "
                            "daemon in the foreground", description=_SCHEDULER_DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    daemon.add_argument("--poll", metavar="SECONDS", type=float, default=0.2,
                        help="how often to look for due runs (default: 0.2)")
    daemon.add_argument("--num-cpus", metavar="N", type=int, default=None,
                        help="CPUs (worker processes) the runs may use (default: all)")

    schedule = sub.add_parser("schedule", help="add, list, pause, resume, remove or trigger "
                              "workflow schedules")
    actions = schedule.add_subparsers(dest="action", metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[storage], help="save a cron schedule",
        description="Save a schedule: TARGET (MODULE:FUNCTION returning a DAG built with "
                    ".bind(), or MODULE:DAG; the current directory is searched first) runs at "
                    "every CRON time in TIMEZONE once `sluice scheduler` runs. An invalid cron, "
                    "timezone or target is refused.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--target", required=True, metavar="MODULE:FUNCTION")
    add.add_argument("--cron", required=True, metavar="EXPR",
                     help="5 fields (minute hour day-of-month month day-of-week), 6 with seconds "
                          "first ('*/2 * * * * *' = every 2 s), or @hourly, @daily, ...")
    add.add_argument("--timezone", default="UTC", metavar="TZ",
                     help="the IANA timezone the cron reads (default: UTC)")
    add.add_argument("--catchup", action="store_true",
                     help="fire every run missed while no scheduler ran (default: only the latest)")
    add.add_argument("--max-active-runs", type=int, default=1, metavar="N",
                     help="a run due while N runs of this schedule are running is skipped "
                          "(default: 1)")
    add.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help=_PARAM_HELP)
    actions.add_parser("list", parents=[storage], help="list the schedules")
    for action, text in (("pause", "stop firing a schedule (until resumed)"),
                         ("resume", "fire a paused schedule again"),
                         ("remove", "remove a schedule and its fire records (its runs stay)")):
        actions.add_parser(action, parents=[storage], help=text).add_argument("name", metavar="NAME")
    trigger = actions.add_parser(
        "trigger", parents=[storage], help="run a schedule's target now, in this process",
        description="Run the schedule's target now in this process, recorded as a fire of the "
                    "schedule with logical time now (or --logical-time), and print its output "
                    "(after a line SCHEDULE  LOGICAL-TIME  OUTCOME  WORKFLOW-ID). The target "
                    "gets that logical_time, and as data_interval the period since the "
                    "schedule's fire time before it, if it names them. It does not move the "
                    "schedule's timeline, nor wait for its max-active-runs. Exit status 1 if "
                    "the run fails.")
    trigger.add_argument("name", metavar="NAME")
    trigger.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help=f"override one of the schedule's params; {_PARAM_HELP}")
    trigger.add_argument("--logical-time", metavar="ISO",
                         help="the run's logical time (default: now), ISO 8601 (2026-03-01 or "
                              "2026-03-01T06:00); without an offset it is read in the "
                              "schedule's timezone; a time the schedule has a run for already "
                              "is refused")

    backfill = sub.add_parser(
        "backfill", parents=[storage], help="run a schedule's fire times over a past range",
        description="Run every fire time of schedule NAME from START to END, both included, "
                    "oldest first, in this process, each recorded as a fire with that logical "
                    "time (which the target gets as logical_time, with data_interval, if it "
                    "names them); times already recorded (fired, skipped or backfilled before) "
                    "are skipped. START and END are ISO 8601 (2026-03-01 or "
                    "2026-03-01T06:00); without an offset they are read in the schedule's "
                    "timezone. A date without a time means the whole day: --start 2026-11-01 "
                    "--end 2026-11-07 covers 7 days of a daily schedule, from 11-01 00:00 to "
                    "the end of 11-07; a time includes a fire at exactly that time. Exit "
                    "status 1 if a run fails.")
    backfill.add_argument("name", metavar="NAME")
    backfill.add_argument("--start", required=True, metavar="ISO",
                          help="the first time (a date: from its 00:00)")
    backfill.add_argument("--end", required=True, metavar="ISO",
                          help="the last time, included (a date: its whole day)")

    runs = sub.add_parser("workflow", help="list, show, resume or cancel workflow runs")
    run_actions = runs.add_subparsers(dest="action", metavar="ACTION")
    listing = run_actions.add_parser("list", parents=[storage], help="list the runs")
    listing.add_argument("--status", type=str.upper, metavar="STATUS",
                         choices=[s.value for s in WorkflowStatus],
                         help="only runs with this status: "
                              + ", ".join(s.value for s in WorkflowStatus))
    for action, text in (("show", "a run and each of its steps"),
                         ("resume", "continue a run from its checkpoints, in this process"),
                         ("cancel", "cancel a run (a running one stops at its next step)")):
        run_actions.add_parser(action, parents=[storage], help=text).add_argument(
            "workflow_id", metavar="ID")


# ---------------------------------------------------------------------------- dispatch

def run(args: argparse.Namespace) -> int:
    """Run a parsed workflow command; its exit status (errors printed on stderr)."""
    name = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
    if args.command in ("schedule", "workflow") and args.action is None:
        print(f"sluice {args.command}: error: name an action, e.g. `sluice {args.command} list` "
              f"(see `sluice {args.command} --help`)", file=sys.stderr)
        return 2
    handler = _HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        return handler(args)
    except UsageError as exc:
        print(f"sluice {name}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sluice {name}: interrupted", file=sys.stderr)
        return 130


def _usage_errors() -> tuple[type[BaseException], ...]:
    """What a command line can get wrong: a cron, timezone, target, name, id or storage."""
    from sluice.libs.workflow.storage import StorageError

    return (StorageError, ValueError)  # CronError and TargetError are ValueErrors


def _storage(args: argparse.Namespace, create: bool = False) -> Any:
    """The storage ``--storage`` names. Only the commands that add to it from nothing
    (``schedule add``, ``scheduler``) create it: any other one, given a folder without a
    storage (a typo), says so and creates nothing."""
    from sluice.libs.workflow.storage import WorkflowStorage

    try:
        return WorkflowStorage(args.storage, create=create)
    except _usage_errors() as exc:
        raise UsageError(str(exc)) from None


def _importable_cwd() -> None:
    """Targets import from the current directory first (as ``sluice plan``); workers inherit
    ``sys.path``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


# ----------------------------------------------------------------------------- schedule

def _schedule_add(args: argparse.Namespace) -> int:
    from sluice.libs.workflow import api
    from sluice.libs.workflow.cron import next_fire_time, parse_cron

    _importable_cwd()
    store = _storage(args, create=True)
    try:
        api.schedule(args.name, args.target, args.cron, timezone=args.timezone,
                     params=_params(args.param), catchup=args.catchup,
                     max_active_runs=args.max_active_runs, storage=store)
    except _usage_errors() as exc:
        raise UsageError(str(exc)) from None
    upcoming = next_fire_time(parse_cron(args.cron), args.timezone, datetime.now(timezone.utc))
    print(f"added schedule {args.name!r}: {args.target} at {args.cron!r} ({args.timezone}); "
          f"next run {upcoming.isoformat()}")
    return 0


def _schedule_list(args: argparse.Namespace) -> int:
    store = _storage(args)
    rows = []
    for s in store.list_schedules():
        fires = store.fires(s["name"])
        last = f"{fires[-1]['logical_time']} {fires[-1]['outcome']}" if fires else "never"
        rows.append((s["name"], s["cron"], s["timezone"], s["target"],
                     "yes" if s["paused"] else "no", last))
    if not rows:
        print(f"no schedules in {store.folder}; add one with `sluice schedule add`")
        return 0
    _print_table(("NAME", "CRON", "TIMEZONE", "TARGET", "PAUSED", "LAST FIRED"), rows)
    return 0


def _schedule_set_paused(paused: bool) -> Any:
    def handler(args: argparse.Namespace) -> int:
        store = _storage(args)
        try:
            store.set_paused(args.name, paused)
        except _usage_errors() as exc:
            raise UsageError(str(exc)) from None
        print(f"{'paused' if paused else 'resumed'} schedule {args.name!r}")
        return 0
    return handler


def _schedule_remove(args: argparse.Namespace) -> int:
    store = _storage(args)
    try:
        store.remove_schedule(args.name)
    except _usage_errors() as exc:
        raise UsageError(str(exc)) from None
    print(f"removed schedule {args.name!r}")
    return 0


def _schedule_trigger(args: argparse.Namespace) -> int:
    from sluice.libs.workflow.cron import check_timezone

    store = _storage(args)
    schedule = _get_schedule(store, args.name)
    params = {**schedule["params"], **_params(args.param)}
    logical_time = datetime.now(timezone.utc)
    if args.logical_time is not None:
        try:
            tz = check_timezone(schedule["timezone"])
        except ValueError as exc:
            raise UsageError(f"schedule {args.name!r} cannot be triggered: {exc}") from None
        logical_time = _instant(args.logical_time, "--logical-time", tz)
        taken = {f["logical_time"]: f for f in store.fires(args.name)}.get(_iso(logical_time))
        if taken is not None:
            raise UsageError(f"schedule {args.name!r} has a fire at {_iso(logical_time)} already "
                             f"({taken['outcome']}, workflow {taken['workflow_id'] or '-'}); "
                             f"resume that run, or give another --logical-time")
    _check_target(schedule, params, logical_time)
    with _runtime():
        succeeded, output = _FireHere(store, params)(schedule, logical_time)
    if succeeded:
        print(output)
        return 0
    return 1


def _backfill(args: argparse.Namespace) -> int:
    from sluice.libs.workflow.cron import check_timezone, fire_times, parse_cron

    store = _storage(args)
    schedule = _get_schedule(store, args.name)
    try:
        spec, tz = parse_cron(schedule["cron"]), check_timezone(schedule["timezone"])
    except ValueError as exc:
        raise UsageError(f"schedule {args.name!r} cannot be backfilled: {exc}") from None
    start = _instant(args.start, "--start", tz)
    end, end_included = _range_end(args.end, tz)
    if start > end or (start == end and not end_included):
        raise UsageError(f"--start {args.start} is after --end {args.end}; give START <= END")
    # fire_times covers (after, until]; fire times are whole seconds, so shifting an end by a
    # microsecond includes START, and excludes an END that is the day after a date.
    until = end if end_included else end - timedelta(microseconds=1)
    due = fire_times(spec, tz, start - timedelta(microseconds=1), until)
    recorded = {f["logical_time"] for f in store.fires(args.name)}
    todo = [t for t in due if _iso(t) not in recorded]
    failed = 0
    if todo:
        _check_target(schedule, schedule["params"], todo[0])
        fire = _FireHere(store, schedule["params"])
        with _runtime():
            for logical_time in todo:
                succeeded, _ = fire(schedule, logical_time)
                failed += not succeeded
    span = f"[{_iso(start)}, {_iso(end)}" + ("]" if end_included else ")")
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

    _importable_cwd()
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

        name, iso = schedule["name"], _iso(logical_time)
        workflow_id = scheduled_workflow_id(name, logical_time)
        self.ended = None
        outcome = self.scheduler.fire(schedule, logical_time)
        if outcome is None:
            _print_fire(name, iso, "ALREADY_RECORDED", workflow_id)
            return True, None
        if self.ended is None:  # the launch itself failed (the scheduler logged why)
            _print_fire(name, iso, outcome, workflow_id)
            return False, None
        outcome, output, error = self.ended
        _print_fire(name, iso, outcome, workflow_id, error=error)
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
            self.store.set_fire_outcome(schedule["name"], _iso(logical_time), status.value)
            self.ended = (status.value, None, f"not run again: {exc}")
        except KeyboardInterrupt:  # the engine stored the run RESUMABLE
            _print_fire(schedule["name"], _iso(logical_time),
                        self.store.status(workflow_id).value, workflow_id)
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the run's outcome
            error = f"{type(exc).__name__}: {exc}"
            if self.store.get_run(workflow_id) is None:  # its target did not build for this time
                self.store.set_fire_outcome(schedule["name"], _iso(logical_time), LAUNCH_FAILED)
                self.ended = (LAUNCH_FAILED, None, error)
            else:
                self.ended = (self.store.status(workflow_id).value, None, error)
        else:
            self.ended = (WorkflowStatus.SUCCESSFUL.value, output, None)


# ----------------------------------------------------------------------------- workflow

def _workflow_list(args: argparse.Namespace) -> int:
    store = _storage(args)
    rows = []
    for workflow_id, status in store.list_runs(args.status):
        run = store.get_run(workflow_id) or {}
        rows.append((workflow_id, status.value, _clock(run.get("created")),
                     run.get("schedule_name") or "-"))
    if not rows:
        which = f"{args.status} runs" if args.status else "runs"
        print(f"no {which} in {store.folder}")
        return 0
    _print_table(("WORKFLOW", "STATUS", "CREATED", "SCHEDULE"), rows)
    return 0


def _workflow_show(args: argparse.Namespace) -> int:
    store = _storage(args)
    run = _get_run(store, args.workflow_id)
    print(f"workflow  {args.workflow_id}")
    print(f"status    {run['status'].value}")
    print(f"created   {_clock(run['created'])}")
    print(f"updated   {_clock(run['updated'])}")
    if run["schedule_name"]:
        print(f"schedule  {run['schedule_name']} at {run['logical_time']}")
    if run["error"]:
        print(f"error     {_one_line(run['error'])}")
    rows = [(s["name"], s["step_id"], s["status"].value, str(s["attempts"]),
             "-" if s["duration"] is None else f"{s['duration']:.3f}s",
             _one_line(s["error"]) if s["error"] else "-")
            for s in store.steps(args.workflow_id)]
    print()
    if rows:
        _print_table(("STEP", "ID", "STATUS", "ATTEMPTS", "DURATION", "ERROR"), rows)
    else:
        print("no step has started")
    return 0


def _workflow_resume(args: argparse.Namespace) -> int:
    from sluice.libs.workflow import api
    from sluice.libs.workflow.storage import WorkflowExistsError

    _importable_cwd()
    store = _storage(args)
    _get_run(store, args.workflow_id)
    with _runtime():
        try:
            output = api.resume(args.workflow_id, storage=store)
        except WorkflowExistsError as exc:  # RUNNING under a live driver
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:  # the engine stored the run RESUMABLE
            print(f"{args.workflow_id}  {store.status(args.workflow_id).value}")
            raise
        except Exception as exc:  # noqa: BLE001 - a step failed, or it was canceled: its outcome
            print(f"{args.workflow_id}  {store.status(args.workflow_id).value}  "
                  f"{type(exc).__name__}: {_one_line(str(exc))}")
            return 1
    print(f"{args.workflow_id}  {WorkflowStatus.SUCCESSFUL.value}")
    print(output)
    return 0


def _workflow_cancel(args: argparse.Namespace) -> int:
    store = _storage(args)
    status = _get_run(store, args.workflow_id)["status"]
    if status not in (WorkflowStatus.RUNNING, WorkflowStatus.RESUMABLE):
        raise UsageError(f"workflow {args.workflow_id!r} is {status.value}; only a RUNNING or "
                         f"RESUMABLE run can be canceled")
    # A RUNNING run is canceled only if it is still running (not if it just ended).
    expected = WorkflowStatus.RUNNING if status is WorkflowStatus.RUNNING else None
    if not store.set_status(args.workflow_id, WorkflowStatus.CANCELED, expected=expected):
        raise UsageError(f"workflow {args.workflow_id!r} ended while it was being canceled: it is "
                         f"{store.status(args.workflow_id).value}")
    print(f"canceled {args.workflow_id}"
          + (" (its driver stops at its next step)" if status is WorkflowStatus.RUNNING else ""))
    return 0


def _get_run(store: Any, workflow_id: str) -> dict:
    run = store.get_run(workflow_id)
    if run is None:
        raise UsageError(f"no workflow {workflow_id!r} in {store.folder}; `sluice workflow list` "
                         f"shows the ones there are (check --storage or $SLUICE_WORKFLOW_STORAGE)")
    return run


# ---------------------------------------------------------------------------- scheduler

def _scheduler(args: argparse.Namespace) -> int:
    if not args.poll > 0:
        raise UsageError(f"--poll {args.poll}: give a positive number of seconds")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError(f"--num-cpus {args.num_cpus}: give at least 1")
    store = _storage(args, create=True)   # it waits for schedules added later
    _importable_cwd()
    daemon = _Daemon(store)
    previous = {sig: signal.signal(sig, daemon.request_stop)
                for sig in (signal.SIGTERM, signal.SIGINT)}
    logging.basicConfig(format="sluice scheduler: %(levelname)s: %(message)s")
    import sluice

    started = not sluice.is_initialized()
    if started:
        sluice.init(num_cpus=args.num_cpus)
    print(f"sluice scheduler: watching {store.folder} (pid {os.getpid()}); SIGTERM or Ctrl-C "
          f"stops it", file=sys.stderr, flush=True)
    try:
        daemon.run(args.poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # a second Ctrl-C while stopping interrupts as usual
        if started:
            sluice.shutdown()  # the tasks driving the runs in flight end with it
        daemon.leave_resumable()
    print("sluice scheduler: stopped", file=sys.stderr, flush=True)
    return 0


class _Daemon:
    """The scheduler loop of ``sluice scheduler``: ticks, and reports runs as they end."""

    def __init__(self, store: Any):
        from sluice.libs.workflow import api
        from sluice.libs.workflow.scheduler import Scheduler

        self.store = store
        self._launch_scheduled = api.launch_scheduled
        self.scheduler = Scheduler(store, launcher=self._launch)
        self.stop = threading.Event()
        # Runs this daemon started whose end it has not reported: ref -> (schedule, iso, id).
        # Ends are not reported once stopping, so at the stop these are the runs in flight.
        self.pending: dict[Any, tuple[str, str, str]] = {}
        self.stopped_at = float("inf")   # when the first stop signal came

    def _launch(self, schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        ref = self._launch_scheduled(self.store, schedule, logical_time, workflow_id)
        self.pending[ref] = (schedule["name"], _iso(logical_time), workflow_id)

    def request_stop(self, *_: Any) -> None:
        """The SIGTERM/SIGINT handler: stop ticking (and note when)."""
        self.stopped_at = min(self.stopped_at, time.time())
        self.stop.set()

    def run(self, poll_s: float) -> None:
        """Tick every ``poll_s`` seconds until stopped, printing each fire and each end."""
        self.scheduler.run_forever(self.stop, poll_s, on_tick=self._report)

    def _report(self, handled: list[tuple[str, datetime, str]]) -> None:
        """After a tick: a line for each time it handled, then one for each run that ended."""
        import sluice
        from sluice.libs.workflow.scheduler import scheduled_workflow_id

        for name, logical_time, outcome in handled:
            _print_fire(name, _iso(logical_time), outcome, scheduled_workflow_id(name, logical_time))
        if not self.pending or self.stop.is_set():  # once stopping, leave_resumable reports
            return
        ready, _ = sluice.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        for ref in ready:
            self._report_end(*self.pending.pop(ref))

    def _report_end(self, name: str, iso: str, workflow_id: str) -> None:
        """Print how a run ended; a run the stop interrupted is stored RESUMABLE first.

        A Ctrl-C reaches the workers too: a driver it interrupts stores its run RESUMABLE
        itself, but a step it interrupts can fail the run just before. A run that failed
        once the stop had come did not fail on its own, so it is made RESUMABLE (its
        error kept).
        """
        run = self.store.get_run(workflow_id)
        if run["status"] is WorkflowStatus.FAILED and run["updated"] >= self.stopped_at:
            self.store.set_status(workflow_id, WorkflowStatus.RESUMABLE, error=run["error"],
                                  expected=WorkflowStatus.FAILED)
            run = self.store.get_run(workflow_id)
        _print_fire(name, iso, run["status"].value, workflow_id, error=run["error"])

    def leave_resumable(self) -> None:
        """Once the runtime is shut down, store RESUMABLE for the runs it left unfinished, and
        print the end of every run in flight at the stop.

        A run's driver was the worker whose task drove it (killed with the runtime:
        storage reads the run RESUMABLE anyway) or, if that task never started, this
        process, which exits next. Storing it says so at once, and keeps the fire
        record's outcome in step (it would stay RUNNING).
        """
        import socket

        runs = list(self.pending.values())
        self.pending.clear()  # their refs died with the runtime
        for name, iso, workflow_id in runs:
            run = self.store.get_run(workflow_id)
            ours = (run["driver_pid"], run["driver_host"]) == (os.getpid(), socket.gethostname())
            if run["status"] is WorkflowStatus.RESUMABLE or (
                    run["status"] is WorkflowStatus.RUNNING and ours):
                self.store.set_status(workflow_id, WorkflowStatus.RESUMABLE,
                                      expected=WorkflowStatus.RUNNING)
            self._report_end(name, iso, workflow_id)


# ------------------------------------------------------------------------------ helpers

def _params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r} is not KEY=VALUE; e.g. --param day=2026-03-01")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params


def _instant(text: str, option: str, tz: Any) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 date or time; e.g. 2026-03-01 or "
                         f"2026-03-01T06:00:00+00:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(timezone.utc)


def _range_end(text: str, tz: Any) -> tuple[datetime, bool]:
    """``--end`` as (instant, included): a date alone means its whole day, so the instant is
    the next day's 00:00 in ``tz``, excluded; a time is included."""
    from datetime import date

    try:
        day = date.fromisoformat(text)
    except ValueError:
        return _instant(text, "--end", tz), True
    next_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return next_day.astimezone(timezone.utc), False


def _iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat()


def _clock(unix: float | None) -> str:
    if unix is None:
        return "-"
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")


def _print_fire(name: str, iso: str, outcome: str, workflow_id: str | None,
                error: str | None = None) -> None:
    fields = [name, iso, outcome, workflow_id or "-"] + ([_one_line(error)] if error else [])
    print("  ".join(fields), flush=True)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


@contextmanager
def _runtime() -> Iterator[None]:
    """The sluice runtime for a command that drives runs here: started, and shut down after,
    unless one runs already."""
    import sluice

    started = not sluice.is_initialized()
    if started:
        sluice.init()
    try:
        yield
    finally:
        if started:
            sluice.shutdown()


_HANDLERS = {
    ("scheduler", None): _scheduler,
    ("schedule", "add"): _schedule_add,
    ("schedule", "list"): _schedule_list,
    ("schedule", "pause"): _schedule_set_paused(True),
    ("schedule", "resume"): _schedule_set_paused(False),
    ("schedule", "remove"): _schedule_remove,
    ("schedule", "trigger"): _schedule_trigger,
    ("backfill", None): _backfill,
    ("workflow", "list"): _workflow_list,
    ("workflow", "show"): _workflow_show,
    ("workflow", "resume"): _workflow_resume,
    ("workflow", "cancel"): _workflow_cancel,
}
