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
import sys
from typing import Any

from sluice.libs.workflow import cli_runs, cli_schedule
from sluice.libs.workflow.cli_common import UsageError, one_line
from sluice.libs.workflow.status import WorkflowStatus

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("scheduler", "schedule", "backfill", "workflow")

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
        print(f"sluice {name}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sluice {name}: interrupted", file=sys.stderr)
        return 130


_HANDLERS = {
    ("scheduler", None): cli_runs.scheduler,
    ("schedule", "add"): cli_schedule.schedule_add,
    ("schedule", "list"): cli_schedule.schedule_list,
    ("schedule", "pause"): cli_schedule.schedule_set_paused(True),
    ("schedule", "resume"): cli_schedule.schedule_set_paused(False),
    ("schedule", "remove"): cli_schedule.schedule_remove,
    ("schedule", "trigger"): cli_schedule.schedule_trigger,
    ("backfill", None): cli_schedule.backfill,
    ("workflow", "list"): cli_runs.workflow_list,
    ("workflow", "show"): cli_runs.workflow_show,
    ("workflow", "resume"): cli_runs.workflow_resume,
    ("workflow", "cancel"): cli_runs.workflow_cancel,
}
