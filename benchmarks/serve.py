"""Online serving side by side: sluice.serve, Ray Serve and the bare-ASGI limit, one run.

``python -m benchmarks.serve [--systems sluice,ray,asgi] [--rows ...] [--rounds 2] [--quick]``
(the serving part of ``make bench``) measures four rows, each (system, row, round) in a
fresh process, the order of the systems reversing every round:

* ``noop_http``: a no-op deployment, one replica, over HTTP: requests/s and p50/p99 from
  the shared client (``benchmarks.serve_client``: 8 keep-alive connections, one request
  in flight on each, a warm-up then a fixed count). ``asgi`` answers the same request from
  a bare uvicorn + starlette process (``benchmarks.serve_asgi``): the limit.
* ``handle_calls``: 2,000 sequential ``handle.remote().result()`` calls from the driver
  to the same no-op deployment: p50 (and mean, p99) per call.
* ``ingress_http``: an ingress deployment calling a model deployment through a handle, over
  HTTP with the same client: requests/s.
* ``startup``: in a fresh process (imports done), the runtime started, ``serve.start``,
  ``serve.run`` of the no-op app, to the first HTTP answer: seconds.

The deployments are the same code for sluice and Ray (``from sluice import serve`` or
``from ray import serve``). Each runtime is started with 2 CPUs and stopped after its row
(``serve.shutdown()``, then the runtime's ``shutdown()``); every port is a free one.
Before each row the runner waits (up to 30 s) until the machine is nearly idle: Ray's
daemons take seconds to wind down after its shutdown, and a row measured beside them
(whichever system follows Ray) would share the two cores with them.
sluice's column is skipped, with the import error, while ``import sluice.serve`` fails;
Ray's while ``ray.serve`` is not installed (``pip install 'ray[serve]'``).

A figure is the median over the rounds; the ratios are sluice over Ray (and over the limit
for the no-op's requests/s). The results go to ``benchmarks/results/serve.json`` (a run
of part of the rows or systems, or ``--quick``, to ``serve-subset.json`` / ``serve-quick.json``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
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
ROWS = ("noop_http", "handle_calls", "ingress_http", "startup")
SYSTEMS = ("sluice", "ray", "asgi")
# The limit answers only the plain no-op request; it has no handles or deployments.
ROW_SYSTEMS = {"noop_http": SYSTEMS, "handle_calls": ("sluice", "ray"),
               "ingress_http": ("sluice", "ray"), "startup": ("sluice", "ray")}
NUM_CPUS = 2
CONNECTIONS = 8
HANDLE_CALLS = 2_000
TIMEOUT_S = 300.0


def sizes(system: str, quick: bool) -> dict[str, int]:
    """Requests per HTTP row (after a warm-up) and handle calls; smaller for a smoke run.

    Ray Serve answers 50-170 requests/s here, so 2,000 requests take it 12-40 s; the
    faster systems get ten times as many, so that their timed part also lasts seconds
    rather than a fraction of one (the figures are rates and percentiles, not totals).
    """
    scale = 1 if system == "ray" else 10
    if quick:
        return {"warmup": 50, "count": 300 * scale, "handle_warmup": 20, "handle_calls": 200}
    return {"warmup": 200 * scale, "count": 2_000 * scale, "handle_warmup": 50,
            "handle_calls": HANDLE_CALLS}


# --- the deployments: Ray Serve's API, the same code for both systems ----------------------

def make_apps(serve: Any) -> dict[str, Any]:
    """The benchmark's deployments, defined inside a function so that each system pickles
    them by value (as ``benchmarks.workloads.pool`` does)."""

    @serve.deployment
    class Noop:
        def __call__(self, request=None):
            return "ok"

    @serve.deployment
    class Model:
        def __call__(self, x):
            return x

    @serve.deployment
    class Ingress:
        def __init__(self, model):
            self.model = model

        async def __call__(self, request):
            return await self.model.remote(1)

    return {"noop": Noop.bind(), "ingress": Ingress.bind(Model.bind())}


# --- one row in this process ----------------------------------------------------------------

def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_answer(port: int, deadline_s: float = 120.0) -> float:
    """Poll ``GET /`` on ``port`` until a 200 comes back; the time it came (perf_counter)."""
    give_up = time.perf_counter() + deadline_s
    last = "no answer"
    while time.perf_counter() < give_up:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return time.perf_counter()
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        time.sleep(0.002)  # a benchmark's poll, not a test's synchronisation
    raise TimeoutError(f"port {port} gave no 200 within {deadline_s:.0f} s (last: {last})")


def run_client(port: int, warmup: int, count: int) -> dict:
    """The shared client, in a process of its own, against ``http://127.0.0.1:port/``."""
    command = [sys.executable, "-m", "benchmarks.serve_client", f"http://127.0.0.1:{port}/",
               "--connections", str(CONNECTIONS), "--warmup", str(warmup), "--count", str(count)]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    if out.returncode != 0:
        raise RuntimeError(f"serve_client failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_system(system: str) -> tuple[Any, Any]:
    """(the runtime module, its serve module) for ``sluice`` or ``ray``."""
    if system == "sluice":
        import sluice
        from sluice import serve
        return sluice, serve
    import ray
    from ray import serve
    return ray, serve


def start_runtime(system: str, runtime: Any) -> None:
    if system == "sluice":
        runtime.init(num_cpus=NUM_CPUS)
    else:
        runtime.init(num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)


@contextlib.contextmanager
def serving(system: str) -> Iterator[tuple[Any, Any, int]]:
    """The runtime started and Serve's HTTP proxy on a free port; both stopped after."""
    runtime, serve = import_system(system)
    port = free_port()
    start_runtime(system, runtime)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            yield runtime, serve, port
        finally:
            serve.shutdown()
    finally:
        runtime.shutdown()


def _http_row(system: str, app_key: str, size: dict[str, int]) -> dict:
    with serving(system) as (_, serve, port):
        serve.run(make_apps(serve)[app_key], name="default", route_prefix="/")
        wait_for_answer(port)
        return run_client(port, size["warmup"], size["count"])


def row_noop_http(system: str, size: dict[str, int]) -> dict:
    if system == "asgi":
        return _asgi_noop(size)
    return _http_row(system, "noop", size)


def row_ingress_http(system: str, size: dict[str, int]) -> dict:
    return _http_row(system, "ingress", size)


def row_handle_calls(system: str, size: dict[str, int]) -> dict:
    with serving(system) as (_, serve, _port):
        handle = serve.run(make_apps(serve)["noop"], name="default", route_prefix="/")
        for _ in range(size["handle_warmup"]):
            assert handle.remote().result() == "ok"
        latencies = []
        started = time.perf_counter()
        for _ in range(size["handle_calls"]):
            start = time.perf_counter()
            handle.remote().result()
            latencies.append(time.perf_counter() - start)
        total = time.perf_counter() - started
    latencies.sort()
    return {"calls": len(latencies), "seconds": total, "p50_s": statistics.median(latencies),
            "mean_s": total / len(latencies), "p99_s": latencies[int(0.99 * (len(latencies) - 1))]}


def row_startup(system: str, size: dict[str, int]) -> dict:
    began = time.perf_counter()
    runtime, serve = import_system(system)
    imported = time.perf_counter()
    apps = make_apps(serve)
    port = free_port()
    t0 = time.perf_counter()
    start_runtime(system, runtime)
    t_init = time.perf_counter()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        t_start = time.perf_counter()
        serve.run(apps["noop"], name="default", route_prefix="/")
        t_run = time.perf_counter()
        t_answer = wait_for_answer(port)
        serve.shutdown()
    finally:
        runtime.shutdown()
    return {"seconds": t_answer - t0, "import_s": imported - began, "init_s": t_init - t0,
            "serve_start_s": t_start - t_init, "serve_run_s": t_run - t_start,
            "first_answer_after_run_s": t_answer - t_run, "run_to_answer_s": t_answer - t_start}


def _asgi_noop(size: dict[str, int]) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.serve_asgi", "--port", str(port)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_answer(port, deadline_s=60)
        return run_client(port, size["warmup"], size["count"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


ROW_FUNCTIONS = {"noop_http": row_noop_http, "handle_calls": row_handle_calls,
                 "ingress_http": row_ingress_http, "startup": row_startup}


def run_one(system: str, row: str, quick: bool) -> int:
    """One row on one system in this process: the result as the last stdout line."""
    package = {"sluice": "sluice", "ray": "ray", "asgi": "uvicorn"}[system]
    return print_record(lambda: ROW_FUNCTIONS[row](system, sizes(system, quick)), package)


# --- the runner -------------------------------------------------------------------------

def skip_reasons(systems: list[str]) -> dict[str, str]:
    """Why a system cannot run here (checked in a child process: nothing is imported here)."""
    checks = {"sluice": ("import sluice.serve", "sluice.serve does not import"),
              "ray": ("import ray.serve", "Ray Serve is not installed (pip install 'ray[serve]')"),
              "asgi": ("import uvicorn, starlette",
                       "uvicorn and starlette are not installed (pip install 'uvicorn[standard]' starlette)")}
    reasons = {}
    for system in systems:
        code, why = checks[system]
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            reasons[system] = f"{system} skipped: {why} ({last})"
    return reasons


# What each table line reads from a row's records, and its target as (ratio, "ge"/"le").
LINES = (
    ("no-op over HTTP, 1 replica: requests/s", "noop_http", "rps", (10.0, "ge"), "{:,.0f}"),
    ("no-op over HTTP, 1 replica: p50", "noop_http", "p50_s", (0.1, "le"), "ms"),
    ("no-op over HTTP, 1 replica: p99", "noop_http", "p99_s", None, "ms"),
    ("2,000 sequential handle calls from the driver: p50", "handle_calls", "p50_s",
     (0.05, "le"), "ms"),
    ("ingress -> model through a handle, over HTTP: requests/s", "ingress_http", "rps",
     (10.0, "ge"), "{:,.0f}"),
    ("ingress -> model through a handle, over HTTP: p50", "ingress_http", "p50_s", None, "ms"),
    ("serve.run to the first answered request (runtime start included)", "startup", "seconds",
     (0.1, "le"), "s"),
    ("... of which serve.run alone to the first answer (runtime and proxy up)", "startup",
     "run_to_answer_s", None, "s"),
)
LIMIT_TARGET = 0.5  # no-op requests/s: at least half the bare-ASGI limit's


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1e3:.2f} ms" if value < 0.1 else f"{value * 1e3:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return unit.format(value)


def _verdict(ratio: float | None, target: tuple[float, str] | None) -> str:
    if target is None:
        return ""
    bound, way = target
    want = f"{'>=' if way == 'ge' else '<='} {bound:g}x Ray"
    if ratio is None:
        return want
    met = ratio >= bound if way == "ge" else ratio <= bound
    return f"{want}: {'met' if met else 'missed'}"


def table(records: list[dict]) -> tuple[str, list[dict]]:
    """The Markdown table and its lines as data (medians, ratios, verdicts)."""
    out = ["| row | Ray Serve | sluice | limit (bare uvicorn + starlette) | sluice / Ray | target |",
           "|---|---|---|---|---|---|"]
    summary = []
    for title, row, key, target, unit in LINES:
        ray, ours = median_of(records, "ray", row, key), median_of(records, "sluice", row, key)
        limit = median_of(records, "asgi", row, key) if row == "noop_http" else None
        ratio = ours / ray if ours is not None and ray else None
        verdict = _verdict(ratio, target)
        if row == "noop_http" and key == "rps":
            of_limit = ours / limit if ours is not None and limit else None
            verdict += (f"; >= {LIMIT_TARGET:g}x the limit"
                        + (f": {of_limit:.2f}x, {'met' if of_limit >= LIMIT_TARGET else 'missed'}"
                           if of_limit is not None else ""))
        summary.append({"row": title, "key": key, "ray": ray, "sluice": ours, "limit": limit,
                        "sluice_over_ray": ratio, "target": target, "verdict": verdict})
        out.append(f"| {title} | {_fmt(ray, unit)} | {_fmt(ours, unit)} | {_fmt(limit, unit)} | "
                   f"{'-' if ratio is None else f'{ratio:.3g}'} | {verdict} |")
    return "\n".join(out), summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "benchmarks.serve", __doc__, SYSTEMS, ROWS, TIMEOUT_S,
                      "fewer requests, for a smoke run")
    if args.one:
        system, row = args.one
        return run_one(system, row, args.quick)
    reasons = skip_reasons(args.systems)
    for reason in reasons.values():
        print(f"note: {reason}", file=sys.stderr, flush=True)
    systems = [s for s in args.systems if s not in reasons]
    runs = []
    for round_index in range(args.rounds):
        order = systems if round_index % 2 == 0 else list(reversed(systems))
        runs += [(round_index, row, s) for row in args.rows for s in order
                 if s in ROW_SYSTEMS[row]]
    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()
    records = []
    for number, (round_index, row, system) in enumerate(runs, 1):
        settled_s = settle()
        record = run_process("benchmarks.serve", system, row, args.quick, args.timeout)
        record["settled_s"] = settled_s
        record.update(round=round_index, row=row, system=system)
        records.append(record)
        shown = record.get("error") or ", ".join(
            f"{k}={record[k]:.4g}" for k in ("rps", "p50_s", "p99_s", "seconds") if k in record)
        print(f"[{number}/{len(runs)}] round {round_index + 1} {row:<12} {system:<6} {shown} "
              f"(load {record['loadavg_after']:.1f})", file=sys.stderr, flush=True)
    text, summary = table(records)
    print(text)
    for reason in reasons.values():
        print(f"\n{reason}")
    whole = args.rows == list(ROWS) and args.systems == list(SYSTEMS) and not reasons
    name = "serve-quick" if args.quick else ("serve" if whole else "serve-subset")
    out = Path(args.out) if args.out else RESULTS / f"{name}.json"
    result = {"started": started.isoformat(), "rounds": args.rounds, "quick": args.quick,
              "sizes": {s: sizes(s, args.quick) for s in SYSTEMS}, "connections": CONNECTIONS, "skipped": reasons,
              "summary": summary, "records": records, "commit": git_commit(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "loadavg_start": load_start, "loadavg_end": os.getloadavg()}}
    write_results(out, result)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
