"""``sluice workflow`` (list, show, resume, cancel) and ``sluice scheduler``, the daemon that
fires due runs."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from typing import Any

from sluice.libs.workflow.cli_common import (
    UsageError,
    clock,
    importable_cwd,
    one_line,
    open_storage,
    print_fire,
    print_table,
    runtime,
    utc_iso,
)
from sluice.libs.workflow.status import WorkflowStatus


def workflow_list(args: argparse.Namespace) -> int:
    """``sluice workflow list``: the runs, optionally of one status."""
    store = open_storage(args)
    rows = []
    for workflow_id, status in store.list_runs(args.status):
        run = store.get_run(workflow_id) or {}
        rows.append((workflow_id, status.value, clock(run.get("created")),
                     run.get("schedule_name") or "-"))
    if not rows:
        which = f"{args.status} runs" if args.status else "runs"
        print(f"no {which} in {store.folder}")
        return 0
    print_table(("WORKFLOW", "STATUS", "CREATED", "SCHEDULE"), rows)
    return 0


def workflow_show(args: argparse.Namespace) -> int:
    """``sluice workflow show``: a run and each of its steps."""
    store = open_storage(args)
    run = _get_run(store, args.workflow_id)
    print(f"workflow  {args.workflow_id}")
    print(f"status    {run['status'].value}")
    print(f"created   {clock(run['created'])}")
    print(f"updated   {clock(run['updated'])}")
    if run["schedule_name"]:
        print(f"schedule  {run['schedule_name']} at {run['logical_time']}")
    if run["error"]:
        print(f"error     {one_line(run['error'])}")
    rows = [(s["name"], s["step_id"], s["status"].value, str(s["attempts"]),
             "-" if s["duration"] is None else f"{s['duration']:.3f}s",
             one_line(s["error"]) if s["error"] else "-")
            for s in store.steps(args.workflow_id)]
    print()
    if rows:
        print_table(("STEP", "ID", "STATUS", "ATTEMPTS", "DURATION", "ERROR"), rows)
    else:
        print("no step has started")
    return 0


def workflow_resume(args: argparse.Namespace) -> int:
    """``sluice workflow resume``: continue a run from its checkpoints, here."""
    from sluice.libs.workflow import api
    from sluice.libs.workflow.storage import WorkflowExistsError

    importable_cwd()
    store = open_storage(args)
    _get_run(store, args.workflow_id)
    with runtime():
        try:
            output = api.resume(args.workflow_id, storage=store)
        except WorkflowExistsError as exc:  # RUNNING under a live driver
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:  # the engine stored the run RESUMABLE
            print(f"{args.workflow_id}  {store.status(args.workflow_id).value}")
            raise
        except Exception as exc:  # noqa: BLE001 - a step failed, or it was canceled: its outcome
            print(f"{args.workflow_id}  {store.status(args.workflow_id).value}  "
                  f"{type(exc).__name__}: {one_line(str(exc))}")
            return 1
    print(f"{args.workflow_id}  {WorkflowStatus.SUCCESSFUL.value}")
    print(output)
    return 0


def workflow_cancel(args: argparse.Namespace) -> int:
    """``sluice workflow cancel``: a running run stops at its next step."""
    store = open_storage(args)
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


def scheduler(args: argparse.Namespace) -> int:
    """``sluice scheduler``: the daemon, in the foreground until SIGTERM or Ctrl-C."""
    if not args.poll > 0:
        raise UsageError(f"--poll {args.poll}: give a positive number of seconds")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError(f"--num-cpus {args.num_cpus}: give at least 1")
    store = open_storage(args, create=True)   # it waits for schedules added later
    importable_cwd()
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
        self.pending[ref] = (schedule["name"], utc_iso(logical_time), workflow_id)

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
            print_fire(name, utc_iso(logical_time), outcome, scheduled_workflow_id(name, logical_time))
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
        print_fire(name, iso, run["status"].value, workflow_id, error=run["error"])

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
