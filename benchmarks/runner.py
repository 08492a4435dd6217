"""The side-by-side runner: every workload on sluice, Ray and Dask, one table.

``python -m benchmarks`` (or ``make bench``). Each (system, workload, round) runs in a
fresh process (``python -m benchmarks.run_one``), so no system inherits another's warm
caches, workers or memory; the order of the systems alternates between rounds, so a
change in the machine's load does not always fall on the same one. The figure per
system is the median of every timed repetition over all rounds.

Ray and Dask are optional (the ``[bench]`` extra): a system that is not installed is
skipped with a note, and its columns show '-'. ``pyarrow`` is a baseline, not a runtime: a
single-process script doing a workload's steps, run only for the workloads that have one
(``etl``); it needs nothing beyond sluice's own dependencies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.side_by_side import run_fresh
from benchmarks.workloads import BASELINES, NAMES, SYSTEMS, load, runner_for

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_TIMEOUT = 600.0  # seconds per process, unless the workload sets TIMEOUT_S
# The import each system needs, and what to install when it is missing.
REQUIREMENTS = {
    "sluice": ("sluice", "pip install -e ."),
    "ray": ("ray", "pip install -e '.[bench]', or make bench"),
    "dask": ("distributed", "pip install -e '.[bench]', or make bench"),
    "pyarrow": ("pyarrow", "pip install -e . (pyarrow is one of sluice's dependencies)"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="sluice vs Ray vs Dask on the same workloads (and a single-process "
                    "pyarrow baseline where a workload has one); prints one table and "
                    "writes benchmarks/results/latest.json and latest.png.")
    parser.add_argument("--workloads", default=",".join(NAMES),
                        help=f"comma-separated, from {','.join(NAMES)} (default: all)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, from {','.join(SYSTEMS)} (default: all installed; "
                             "pyarrow runs only for the workloads that have it)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh processes per system and workload, the order of the "
                             "systems alternating between rounds (default 2: about 32 minutes "
                             "on 2 cores, 20 of them etl_rows; 3 rounds take about 48)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions inside each process (default: each "
                             "workload's REPS, 1 or 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run (writes results/quick.*; the "
                             "targets are for the full sizes)")
    parser.add_argument("--out", default=None,
                        help="results path without suffix (default: benchmarks/results/latest "
                             "for the whole suite, .../quick with --quick, .../subset when "
                             "--workloads or --systems pick a part)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before one process is stopped (default: the workload's "
                             f"TIMEOUT_S, else {DEFAULT_TIMEOUT:.0f})")
    args = parser.parse_args(argv)
    args.workloads = _choices(args.workloads, NAMES, "workload", parser)
    args.systems = _choices(args.systems, SYSTEMS, "system", parser)
    if args.rounds < 1 or (args.reps is not None and args.reps < 1):
        parser.error("--rounds and --reps must be at least 1")
    return args


def _choices(text: str, allowed: tuple[str, ...], what: str, parser) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    for name in chosen:
        if name not in allowed:
            parser.error(f"unknown {what} {name!r}; choose from {','.join(allowed)}")
    return chosen


def installed_systems(systems: list[str], notes: list[str]) -> list[str]:
    """The systems that can run here; a note for each one that cannot."""
    available = []
    for system in systems:
        module, remedy = REQUIREMENTS[system]
        if importlib.util.find_spec(module) is None:
            notes.append(f"{system} skipped: {module} is not installed; {remedy}")
        else:
            available.append(system)
    return available


def run_process(system: str, workload: str, reps: int, quick: bool, timeout: float) -> dict:
    """Run one workload on one system in a fresh process; its record, or an error."""
    command = [sys.executable, "-m", "benchmarks.run_one", system, workload, "--reps", str(reps)]
    if quick:
        command.append("--quick")
    return run_fresh(command, timeout)


def plan_runs(workloads: list[str], systems: list[str], rounds: int, notes: list[str]):
    """(round, workload, system) in run order: systems alternate direction each round."""
    modules = {}
    for name in workloads:
        module = load(name)
        reason = getattr(module, "skip_reason", lambda: None)()
        if reason:
            notes.append(reason)
            continue
        modules[name] = module
        for system in systems:
            if runner_for(module, system) is None and system not in BASELINES:
                notes.append(f"{name}: {system} has no idiom for it ('-')")
    runs = []
    for round_index in range(rounds):
        order = systems if round_index % 2 == 0 else list(reversed(systems))
        for name, module in modules.items():
            runs += [(round_index, name, s) for s in order if runner_for(module, s) is not None]
    return modules, runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    systems = installed_systems(args.systems, notes)
    modules, runs = plan_runs(args.workloads, systems, args.rounds, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    started = dt.datetime.now(dt.timezone.utc)
    machine = report.machine_info(systems)
    records = []
    for number, (round_index, name, system) in enumerate(runs, 1):
        reps = args.reps or getattr(modules[name], "REPS", 1)
        timeout = args.timeout or getattr(modules[name], "TIMEOUT_S", DEFAULT_TIMEOUT)
        record = run_process(system, name, reps, args.quick, timeout)
        record.update(round=round_index, workload=name, system=system, reps=reps)
        records.append(record)
        print(f"[{number}/{len(runs)}] round {round_index + 1} {name:<9} {system:<7} "
              f"{report.describe(record)}", file=sys.stderr, flush=True)
    machine["loadavg_end"] = list(os.getloadavg())
    if not records:
        print("nothing to run", file=sys.stderr)
        return 0
    results = report.summarize(modules, systems, records, args, notes, machine, started)
    print(report.table(results))
    out = Path(args.out) if args.out else RESULTS / default_name(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, json_path)
    print(f"\nwrote {_shown(json_path)}", end="")
    chart = report.chart(results, out.with_suffix(".png"))
    print(f" and {_shown(chart)}" if isinstance(chart, Path) else f"; {chart}")
    failed = [r for r in records if "error" in r]
    return 1 if failed else 0


def default_name(args: argparse.Namespace) -> str:
    """Where results go: only a run of the whole suite replaces ``latest``, the figures
    the READMEs quote; a smoke run or a part of the suite writes beside it."""
    if args.quick:
        return "quick"
    whole = args.workloads == list(NAMES) and args.systems == list(SYSTEMS)
    return "latest" if whole else "subset"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)
