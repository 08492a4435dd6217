"""Run one workload on one system in this (fresh) process and print its timings as JSON.

``python -m benchmarks.run_one SYSTEM WORKLOAD [--reps N] [--quick]``. The result is the
last stdout line, prefixed with ``RESULT_PREFIX`` so that anything a runtime prints to
stdout cannot be mistaken for it. The runner (``python -m benchmarks``) starts one such
process per system, workload and round.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

from benchmarks.workloads import NAMES, SYSTEMS, load, runner_for

RESULT_PREFIX = "@@sluice-bench "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_one", description=__doc__)
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("workload", choices=NAMES)
    parser.add_argument("--reps", type=int, default=1, help="timed repetitions (default 1)")
    parser.add_argument("--quick", action="store_true", help="the smaller smoke-run sizes")
    args = parser.parse_args(argv)

    run = runner_for(load(args.workload), args.system)
    if run is None:
        print(f"{args.system} has no idiom for {args.workload}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        timings = run(args.reps, args.quick)
        record = {"seconds": timings.seconds, "metrics": timings.metrics}
        status = 0
    except Exception as exc:  # noqa: BLE001 - reported to the runner, which goes on
        traceback.print_exc()
        record = {"error": f"{type(exc).__name__}: {exc}".strip()[:500]}
        status = 1
    record["process_seconds"] = time.perf_counter() - start
    print(RESULT_PREFIX + json.dumps(record), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
