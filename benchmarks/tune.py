"""Hyperparameter search side by side: sluice.tune and Ray Tune, one run.

``python -m benchmarks.tune [--systems sluice,ray] [--rows ...] [--rounds 2] [--quick]``
(the tuning part of ``make bench``) measures three rows, each (system, row, round) in a
fresh process once the machine is idle (``benchmarks.side_by_side.settle``), the order of the
systems reversing every round:

* ``one_report``: 1,000 trials of a trivial function trainable that reports once.
* ``many_reports``: 50 trials x 100 reports each.
* ``stopper``: the same 50 x 100 with a stop function (``RunConfig(stop=fn)``, never
  true) asked at every result: each result waits for the driver's decision, the worst
  case of the driver's cost per result (no scheduler promises to decide nothing).
* ``asha``: ASHA (max_t=50, grace_period=1, reduction_factor=4) over 64 trials of a
  synthetic learning curve, ``score = x * (1 - 0.9**iteration)``, ``x`` a 64-point grid
  in one fixed shuffled order (the same configs in the same order for both systems; in
  ascending order every trial would beat those before it and ASHA could stop none): the
  best score is the best trial's at max_t.

Each row is the wall time of ``Tuner(...).fit()`` with ``reuse_actors=True``, the runtime
started before (2 CPUs, one CPU per trial) and a fresh temporary ``storage_path``; both
systems run the same trainables (``from sluice import tune`` or ``from ray import tune``).
sluice's rows also record the driver's own time per reported result (the controller's
handling of each result, its database writes included): in CPU time of the controller's
thread, and in wall time (which also counts the moments the controller's thread waits for
a core while the trial processes run: on 2 cores, each decision sent wakes one).

A figure is the median over the rounds; the ratios are sluice over Ray. Results go to
``benchmarks/results/tune.json`` (a run of part of the rows or systems, or ``--quick``, to
``tune-subset.json`` / ``tune-quick.json``).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.side_by_side import (
    git_commit,
    median_of,
    parse_args,
    print_record,
    run_process,
    settle,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROWS = ("one_report", "many_reports", "stopper", "asha")
SYSTEMS = ("sluice", "ray")
NUM_CPUS = 2
TIMEOUT_S = 600.0
TARGETS = {"one_report": 0.05, "many_reports": 0.1, "stopper": None, "asha": 0.1}
DRIVER_TARGET_US = 100.0


def sizes(quick: bool) -> dict[str, int]:
    """Trials and reports per row (smaller for a smoke run)."""
    if quick:
        return {"one_report": 100, "many_trials": 10, "many_reports": 20, "asha_trials": 16,
                "asha_max_t": 20}
    return {"one_report": 1_000, "many_trials": 50, "many_reports": 100, "asha_trials": 64,
            "asha_max_t": 50}


# --- one row in this process ----------------------------------------------------------------

def import_system(system: str) -> tuple[Any, Any]:
    """(the runtime module, its tune module) for ``sluice`` or ``ray``."""
    if system == "sluice":
        import sluice
        from sluice import tune
        return sluice, tune
    import ray
    from ray import tune
    return ray, tune


def trainables(tune: Any) -> dict[str, Any]:
    """The benchmark's trainables, defined here so each system pickles them by value."""

    def one_report(config):
        tune.report({"score": config["x"]})

    def many_reports(config):
        for i in range(config["reports"]):
            tune.report({"score": config["x"] * i})

    def curve(config):
        for i in range(1, config["max_t"] + 1):
            tune.report({"score": config["x"] * (1 - 0.9 ** i)})

    return {"one_report": one_report, "many_reports": many_reports,
            "stopper": many_reports, "asha": curve}


def never(trial_id, result):
    """The ``stopper`` row's stop function: asked at every result, never true."""
    return False


def run_row(system: str, row: str, size: dict[str, int]) -> dict:
    runtime, tune = import_system(system)
    if system == "sluice":
        runtime.init(num_cpus=NUM_CPUS)
    else:
        runtime.init(num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix=f"bench-tune-{system}-")
    try:
        fn = trainables(tune)[row]
        scheduler = None
        if row == "one_report":
            space, samples = {"x": tune.uniform(0, 1)}, size["one_report"]
        elif row in ("many_reports", "stopper"):
            space = {"x": tune.uniform(0, 1), "reports": size["many_reports"]}
            samples = size["many_trials"]
        else:
            n = size["asha_trials"]
            xs = [(i + 1) / n for i in range(n)]
            random.Random(0).shuffle(xs)  # one fixed order for both systems, not best-last
            space = {"x": tune.grid_search(xs),
                     "max_t": size["asha_max_t"]}
            samples = 1
            from_schedulers = importlib.import_module(f"{tune.__name__}.schedulers")
            scheduler = from_schedulers.ASHAScheduler(max_t=size["asha_max_t"], grace_period=1,
                                                      reduction_factor=4)
        tuner = tune.Tuner(fn, param_space=space,
                           tune_config=tune.TuneConfig(metric="score", mode="max",
                                                       num_samples=samples, reuse_actors=True,
                                                       scheduler=scheduler),
                           run_config=tune.RunConfig(storage_path=storage, name="bench",
                                                     verbose=0,
                                                     stop=never if row == "stopper" else None))
        started = time.perf_counter()
        grid = tuner.fit()
        seconds = time.perf_counter() - started
        record = {"seconds": seconds, "trials": len(grid), "errors": grid.num_errors,
                  "best_score": grid.get_best_result().metrics["score"]}
        frame = grid.get_dataframe()
        record["iterations"] = int(frame["training_iteration"].sum())
        controller = getattr(tuner, "controller", None)
        if controller is not None and controller.num_results:
            record["driver_us_per_result"] = (controller.result_seconds
                                              / controller.num_results * 1e6)
            record["driver_cpu_us_per_result"] = (controller.result_cpu_seconds
                                                  / controller.num_results * 1e6)
        return record
    finally:
        runtime.shutdown()
        import shutil
        shutil.rmtree(storage, ignore_errors=True)


def run_one(system: str, row: str, quick: bool) -> int:
    """One row on one system in this process: the result as the last stdout line."""
    return print_record(lambda: run_row(system, row, sizes(quick)), system)


# --- the runner -------------------------------------------------------------------------

LABELS = {"one_report": "1,000 one-report trials: fit() seconds",
          "many_reports": "50 trials x 100 reports: fit() seconds",
          "stopper": "50 x 100, a stop function at every result: fit() seconds",
          "asha": "ASHA, 64 trials x 50 iterations: fit() seconds"}


def table(records: list[dict], quick: bool) -> tuple[str, dict]:
    """The Markdown table of the medians and ratios, and the same as data."""
    out = ["| row | Ray Tune | sluice | sluice / Ray | target |", "|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for row in ROWS:
        ray_s, sluice_s = (median_of(records, s, row, "seconds") for s in ("ray", "sluice"))
        if ray_s is None and sluice_s is None:
            continue
        ratio = sluice_s / ray_s if ray_s and sluice_s else None
        target = TARGETS[row]
        verdict = "" if ratio is None or target is None else (
            ": met" if ratio <= target else ": missed")
        label = LABELS[row] + (" (quick sizes)" if quick else "")
        goal = "-" if target is None else f"<= {target:g}x Ray{verdict}"
        out.append(f"| {label} | {_fmt(ray_s)} | {_fmt(sluice_s)} | "
                   f"{'-' if ratio is None else f'{ratio:.3g}'} | {goal} |")
        summary[row] = {"ray_s": ray_s, "sluice_s": sluice_s, "ratio": ratio, "target": target}
    best = {s: median_of(records, s, "asha", "best_score") for s in SYSTEMS}
    if best["sluice"] is not None:
        out.append(f"| ASHA best score (no worse than Ray's) | {_fmt(best['ray'], '{:.4f}')} | "
                   f"{_fmt(best['sluice'], '{:.4f}')} | - | "
                   f"{_no_worse(best['sluice'], best['ray'])} |")
        iterations = {s: median_of(records, s, "asha", "iterations") for s in SYSTEMS}
        out.append(f"| ASHA iterations run (of 64 x 50 = 3,200) | "
                   f"{_fmt(iterations['ray'], '{:,.0f}')} | "
                   f"{_fmt(iterations['sluice'], '{:,.0f}')} | - | |")
    summary["best_score"] = best
    summary["driver_us_per_result"] = {}
    for row in ROWS:
        cpu = median_of(records, "sluice", row, "driver_cpu_us_per_result")
        wall = median_of(records, "sluice", row, "driver_us_per_result")
        if cpu is None or wall is None:
            continue
        if row == "one_report":  # a trial's whole life per result: not the per-result cost
            label, goal = "driver's own time per one-report trial (start, result, end)", "-"
        else:
            label = f"driver's own time per reported result, {row}"
            goal = (f"< {DRIVER_TARGET_US:.0f} µs CPU: "
                    f"{'met' if cpu < DRIVER_TARGET_US else 'missed'}")
        out.append(f"| {label}: CPU (wall) | - | {cpu:.0f} µs ({wall:.0f} µs) | - | {goal} |")
        summary["driver_us_per_result"][row] = {"cpu": cpu, "wall": wall}
    return "\n".join(out), summary


def _no_worse(sluice_best: float, ray_best: float | None) -> str:
    if ray_best is None:
        return ""
    return "met" if sluice_best >= ray_best - 1e-9 else "missed"


def _fmt(value: float | None, pattern: str = "{:.2f} s") -> str:
    return "-" if value is None else pattern.format(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "benchmarks.tune", __doc__, SYSTEMS, ROWS, TIMEOUT_S,
                      "smaller rows, for a smoke run")
    if args.one:
        return run_one(*args.one, args.quick)
    runs = []
    for round_index in range(args.rounds):
        order = args.systems if round_index % 2 == 0 else list(reversed(args.systems))
        runs += [(round_index, row, s) for row in args.rows for s in order]
    started = dt.datetime.now(dt.timezone.utc)
    records = []
    for number, (round_index, row, system) in enumerate(runs, 1):
        settled_s = settle()
        record = run_process("benchmarks.tune", system, row, args.quick, args.timeout)
        record.update(round=round_index, row=row, system=system, settled_s=settled_s)
        records.append(record)
        shown = record.get("error") or ", ".join(
            f"{k}={record[k]:.4g}" for k in ("seconds", "best_score", "iterations",
                                              "driver_us_per_result",
                                              "driver_cpu_us_per_result") if k in record)
        print(f"[{number}/{len(runs)}] round {round_index + 1} {row:<12} {system:<6} {shown}",
              file=sys.stderr, flush=True)
    text, summary = table(records, args.quick)
    print(text)
    whole = args.rows == list(ROWS) and args.systems == list(SYSTEMS)
    name = "tune-quick" if args.quick else ("tune" if whole else "tune-subset")
    out = Path(args.out) if args.out else RESULTS / f"{name}.json"
    result = {"started": started.isoformat(), "rounds": args.rounds, "quick": args.quick,
              "sizes": sizes(args.quick), "summary": summary, "records": records,
              "commit": git_commit(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_results(out, result)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
