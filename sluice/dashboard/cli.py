"""``sluice list`` and ``sluice summary``: the state API from the command line, read from a
running dashboard (``--address``, else ``SLUICE_DASHBOARD_ADDRESS``, else the newest head's
on this machine, else http://127.0.0.1:8265), as Ray's ``ray list`` / ``ray summary``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

KINDS = ("tasks", "actors", "objects", "workers", "nodes", "jobs")
SUMMARIES = ("tasks", "actors", "objects")
COMMANDS = ("list", "summary", "logs")

LIST_COLUMNS = {
    "tasks": ("task_id", "name", "state", "type", "node_id", "worker_pid", "duration_s",
              "error_type"),
    "actors": ("actor_id", "class_name", "name", "state", "node_id", "pid", "num_restarts"),
    "objects": ("object_id", "object_size", "task_status", "reference_type", "refs"),
    "workers": ("worker_id", "pid", "node_id", "is_alive", "actor_class", "tasks_in_flight"),
    "nodes": ("node_id", "node_ip", "state", "is_head_node", "resources_total"),
    "jobs": ("job_id", "type", "status", "driver_pid", "entrypoint"),
}


def add_parsers(sub: Any) -> None:
    """Add ``list`` and ``summary`` to the ``sluice`` command's subparsers."""
    listing = sub.add_parser("list", help="list the tasks, actors, objects, workers, nodes or "
                                          "jobs of a running runtime (from its dashboard)")
    listing.add_argument("kind", choices=KINDS)
    listing.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                         help="keep rows whose KEY is VALUE (KEY!=VALUE: is not); repeatable")
    listing.add_argument("--limit", type=int, default=100, help="at most this many rows "
                                                                "(the newest; default 100)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--address", help="the dashboard, http://HOST:PORT")
    summary = sub.add_parser("summary", help="count tasks, actors or objects by name and state")
    summary.add_argument("kind", choices=SUMMARIES)
    summary.add_argument("--format", choices=("table", "json"), default="table")
    summary.add_argument("--address", help="the dashboard, http://HOST:PORT")
    add_logs_parser(sub)


def add_logs_parser(sub: Any) -> None:
    """Add ``logs``: list the workers' log files, or print (and follow) one."""
    logs = sub.add_parser("logs", help="list the workers' log files, or print one",
                          description="Without a file (or --pid/--actor-id/--task-id): list "
                                      "the log files. Read from the dashboard, else from "
                                      "the newest session's folder on this machine.")
    logs.add_argument("filename", nargs="?", help="worker-INDEX-PID.out or .err")
    logs.add_argument("--pid", type=int, help="the log of this worker process")
    logs.add_argument("--actor-id", help="the log of this actor's process")
    logs.add_argument("--task-id", help="the log of the process this task ran in")
    logs.add_argument("--err", action="store_true", help="stderr instead of stdout")
    logs.add_argument("--tail", type=int, default=-1, help="only the last N lines")
    logs.add_argument("--follow", "-f", action="store_true", help="then print new lines "
                                                                  "as they come (Ctrl-C stops)")
    logs.add_argument("--address", help="the dashboard, http://HOST:PORT")


class _FolderLogs:
    """The newest local session's log folder, read directly (no dashboard needed)."""

    def __init__(self) -> None:
        from sluice.executor import logs

        sessions = sorted(logs.logs_root().glob("session_*"), key=lambda p: p.stat().st_mtime)
        if not sessions:
            raise ConnectionError(f"no dashboard answers, and no session logs are under "
                                  f"{logs.logs_root()}")
        self.folder = sessions[-1]

    def files(self) -> list[dict[str, Any]]:
        from sluice.executor import logs

        return logs.log_files(self.folder)

    def lines(self, filename: str, tail: int) -> list[str]:
        from sluice.executor import logs

        return logs.read_log(self.folder, filename, tail)


def run_logs(args: argparse.Namespace) -> int:
    """``sluice logs``."""
    import time

    from sluice.util import state

    address = args.address or default_address()
    try:
        try:
            files = state._log_files(address)
            source: Any = None
        except ConnectionError:
            if args.address:
                raise
            source = _FolderLogs()   # no dashboard: this machine's newest session
            files = source.files()
        selectors = (args.filename, args.pid, args.actor_id, args.task_id)
        if all(v is None for v in selectors):
            print(format_table([{**f, "size": str(f["size"])} for f in files],
                               ("filename", "pid", "worker_index", "stream", "size")))
            return 0
        suffix = "err" if args.err else "out"
        if source is None:
            for line in state.get_log(address, filename=args.filename, pid=args.pid,
                                      actor_id=args.actor_id, task_id=args.task_id,
                                      tail=args.tail, follow=args.follow, suffix=suffix):
                print(line, flush=True)
            return 0
        if args.actor_id or args.task_id:
            raise ValueError("--actor-id and --task-id need a running dashboard; give the "
                             "file or --pid")
        name = args.filename or next((f["filename"] for f in files if f["pid"] == args.pid
                                      and f["stream"] == suffix), None)
        if name is None:
            raise ValueError(f"no worker log of process {args.pid}; run `sluice logs` to "
                             f"list them")
        seen = 0
        while True:
            lines = source.lines(name, -1)
            new = lines[seen:] if seen else (lines if args.tail < 0 else lines[-args.tail:])
            for line in new:
                print(line, flush=True)
            seen = len(lines)
            if not args.follow:
                return 0
            time.sleep(0.25)
    except KeyboardInterrupt:
        return 0
    except ValueError as err:
        print(f"sluice logs: error: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:
        print(f"sluice logs: {err}", file=sys.stderr)
        return 1


def default_address() -> str:
    """Where the CLI looks for a dashboard when not told."""
    given = os.environ.get("SLUICE_DASHBOARD_ADDRESS", "").strip()
    if given:
        return given
    try:
        from sluice.executor.cluster import auth

        heads = [(path, rec) for path, rec in auth.daemon_records()
                 if rec.get("kind") == "head" and rec.get("dashboard")]
    except Exception:  # noqa: BLE001 - no records readable: the default below
        heads = []
    if heads:
        _, newest = max(heads, key=lambda item: item[0].stat().st_mtime)
        return str(newest["dashboard"])
    return "http://127.0.0.1:8265"


def parse_filter(text: str) -> tuple[str, str, str]:
    """``KEY=VALUE`` or ``KEY!=VALUE`` as a state-API filter."""
    for predicate in ("!=", "="):
        key, sep, value = text.partition(predicate)
        if sep and key.strip():
            return key.strip(), predicate, value.strip()
    raise ValueError(f"--filter {text!r}: write KEY=VALUE or KEY!=VALUE, e.g. "
                     f"--filter state=FAILED")


def format_table(rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    """Rows as aligned text columns under a header."""
    cells = [[c.upper() for c in columns]] + [
        ["" if row.get(c) is None else (f"{row[c]:.4g}" if isinstance(row[c], float)
                                        else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip()
                     for line in cells)


def run(args: argparse.Namespace) -> int:
    """Run ``sluice list``, ``summary`` or ``logs``; 2 for bad input, 1 when no dashboard."""
    if args.command == "logs":
        return run_logs(args)
    from sluice.util import state
    from sluice.util.state_client import fetch_rows

    address = args.address or default_address()
    try:
        if args.command == "list":
            filters = [parse_filter(f) for f in args.filter]
            rows = state.select(args.kind, fetch_rows(address, args.kind), filters, args.limit)
            if args.format == "json":
                print(json.dumps([dict(r) for r in rows], indent=2, default=str))
            else:
                print(format_table(rows, LIST_COLUMNS[args.kind]))
                print(f"({len(rows)} {args.kind})")
            return 0
        summarize = {"tasks": state.summarize_task_rows, "actors": state.summarize_actor_rows,
                     "objects": state.summarize_object_rows}[args.kind]
        result = summarize(fetch_rows(address, args.kind))["cluster"]
        if args.format == "json":
            print(json.dumps(result, indent=2, default=str))
            return 0
        groups = result["summary"]
        lines = [{"name": name, **({"type": g["type"]} if "type" in g else {}),
                  "states": ", ".join(f"{k}: {v}" for k, v in sorted(
                      (g.get("state_counts") or g.get("task_state_counts") or {}).items()))}
                 for name, g in groups.items()]
        columns = ("name", "type", "states") if args.kind == "tasks" else ("name", "states")
        print(format_table(lines, columns))
        total = {k: v for k, v in result.items() if k.startswith("total")}
        print(", ".join(f"{k.replace('_', ' ')}: {v:g}" if isinstance(v, float) else
                        f"{k.replace('_', ' ')}: {v}" for k, v in total.items()))
        return 0
    except (ValueError, TypeError) as err:
        print(f"sluice {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:
        print(f"sluice {args.command}: {err}", file=sys.stderr)
        return 1
