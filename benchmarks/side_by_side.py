"""What the side-by-side benchmarks (``benchmarks.serve``, ``benchmarks.tune``) share: their
command line, one (system, row) in a fresh process once the machine is idle, medians, and
the results file."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.run_one import RESULT_PREFIX

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None, module: str, doc: str, systems: tuple[str, ...],
               rows: tuple[str, ...], timeout_s: float, quick_help: str) -> argparse.Namespace:
    """``--systems``, ``--rows`` (comma-separated, checked), ``--rounds``, ``--quick``,
    ``--timeout``, ``--out`` and the runner's hidden ``--one SYSTEM ROW``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0])
    parser.add_argument("--systems", default=",".join(systems),
                        help=f"comma-separated, from {','.join(systems)} (default: all)")
    parser.add_argument("--rows", default=",".join(rows),
                        help=f"comma-separated, from {','.join(rows)} (default: all)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh processes per system and row, the systems' order reversing "
                             "every round (default 2)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--timeout", type=float, default=timeout_s,
                        help=f"seconds before one process is stopped (default {timeout_s:.0f})")
    parser.add_argument("--out", default=None, help="results path (default: see the docstring)")
    parser.add_argument("--one", nargs=2, metavar=("SYSTEM", "ROW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for attr, allowed in (("systems", systems), ("rows", rows)):
        chosen = [part.strip() for part in getattr(args, attr).split(",") if part.strip()]
        for name in chosen:
            if name not in allowed:
                parser.error(f"unknown {attr[:-1]} {name!r}; choose from {','.join(allowed)}")
        setattr(args, attr, chosen)
    if args.rounds < 1:
        parser.error(f"--rounds={args.rounds}: it must be at least 1")
    return args


def print_record(make: Callable[[], dict], package: str) -> int:
    """Run one row in this process (``make()``, its record) and print the record as the last
    stdout line, for :func:`run_fresh`; an exception becomes the record's ``error``."""
    started = time.perf_counter()
    try:
        record = make()
        status = 0
    except Exception as exc:  # noqa: BLE001 - reported to the runner, which goes on
        traceback.print_exc()
        record = {"error": f"{type(exc).__name__}: {exc}".strip()[:500]}
        status = 1
    record["process_seconds"] = time.perf_counter() - started
    with contextlib.suppress(Exception):
        record["version"] = importlib.metadata.version(package)
    print(RESULT_PREFIX + json.dumps(record), flush=True)
    return status


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot (Linux ``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def settle(busy_below: float = 0.25, window_s: float = 0.5, max_wait_s: float = 30.0) -> float:
    """Wait until the machine is nearly idle over a ``window_s`` window (what the row before
    left winding down, e.g. a runtime's daemons after its shutdown, would otherwise share
    the cores with the next row's measurement); the seconds waited. Gives up after
    ``max_wait_s`` (the machine is busy with something else: measure anyway)."""
    if not os.path.exists("/proc/stat"):
        return 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < max_wait_s:
        busy0, total0 = _cpu_times()
        time.sleep(window_s)
        busy1, total1 = _cpu_times()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < busy_below:
            break
    return time.perf_counter() - started


def run_process(module: str, system: str, row: str, quick: bool, timeout: float) -> dict:
    """One (system, row) of ``module`` (its ``--one``) in a fresh process; its record."""
    command = [sys.executable, "-m", module, "--one", system, row]
    return run_fresh(command + ["--quick"] if quick else command, timeout)


def run_fresh(command: list[str], timeout: float) -> dict:
    """Run ``command`` in a fresh process of its own session (whatever it leaves behind is
    stopped with it); the record its last ``RESULT_PREFIX`` line holds, or an error."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _stop_group(proc.pid)
        stdout, stderr = proc.communicate()
        timed_out = True
    _stop_group(proc.pid)  # whatever a runtime failed to stop
    record = next((json.loads(line[len(RESULT_PREFIX):]) for line in reversed(stdout.splitlines())
                   if line.startswith(RESULT_PREFIX)), None)
    if timed_out:
        record = {"error": f"stopped after {timeout:.0f} s"}
    elif record is None:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        record = {"error": f"exit status {proc.returncode}, no result: {tail}"[:500]}
    if "error" in record and stderr.strip():
        record["stderr_tail"] = stderr.strip().splitlines()[-20:]
    record["wall_seconds"] = time.perf_counter() - started
    record["loadavg_after"] = os.getloadavg()[0]
    return record


def _stop_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def median_of(records: list[dict], system: str, row: str, key: str) -> float | None:
    """The median of ``key`` over the error-free records of (system, row); None: none."""
    values = [r[key] for r in records
              if r["system"] == system and r["row"] == row and key in r and "error" not in r]
    return statistics.median(values) if values else None


def git_commit() -> str | None:
    """The checkout's short commit, recorded with the results."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True)
    return out.stdout.strip() or None


def write_results(out: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``out`` (whole or not at all) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")
