"""Distributed training side by side: sluice.train, Ray Train and bare torch.distributed.

``python -m benchmarks.train [--systems sluice,ray,torch] [--rows ...] [--rounds 2]
[--quick]`` (the training part of ``make bench``) measures three rows, each (system, row,
round) in a fresh process once the machine is idle, the systems' order reversing every
round, 2 CPUs, 2 ranks of one CPU each, gloo, one torch thread per rank:

* ``startup``: ``fit()`` of a 2-rank loop that reports once (the runtime started before);
* ``ddp``: 2-rank DistributedDataParallel training of an MLP (256-1024-1024-10, batches of
  64 random rows): steps per second of rank 0 after a warm-up, against the same loop in two
  processes of plain ``torch.distributed`` (``torch`` column: the limit on this machine);
* ``ingest``: each rank reads its share of a Parquet dataset (``iter_torch_batches``,
  batches of 1,024 rows; sluice.data vs Ray Data) in a 2-rank run, the ranks holding half
  a CPU each so that the other CPU reads: rows per second over the whole dataset, from the
  first batch asked to the last rank's end.

A figure is the median over the rounds. Results go to ``benchmarks/results/train.json``
(``train-subset.json`` / ``train-quick.json`` for part of it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
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
ROWS = ("startup", "ddp", "ingest")
SYSTEMS = ("sluice", "ray", "torch")
ROW_SYSTEMS = {"startup": ("sluice", "ray"), "ddp": SYSTEMS, "ingest": ("sluice", "ray")}
NUM_CPUS = 2
TIMEOUT_S = 600.0
PARQUET = Path(tempfile.gettempdir()) / "sluice-bench-train-ingest"


def sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"warmup": 5, "steps": 30, "rows": 200_000, "files": 4}
    return {"warmup": 20, "steps": 300, "rows": 2_000_000, "files": 8}


# --- the loops (the same code for every system) ------------------------------------------

def mlp_steps(rank: int, steps: int, warmup: int, wrap: Any) -> float:
    """Steps per second of DDP training of the MLP (``wrap`` makes the model distributed)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(rank)
    model = wrap(torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                                     torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                     torch.nn.Linear(1024, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
    loss_fn = torch.nn.CrossEntropyLoss()
    started = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return steps / (time.perf_counter() - started)


def loops(train: Any, prepare_model: Any) -> dict[str, Any]:
    """The rows' training loops for ``train`` (``sluice.train`` or ``ray.train``)."""

    def save(config: dict, metrics: dict) -> None:
        # each rank's figures go to a file (Ray Train 2 keeps only metrics reported with a
        # checkpoint), then the report every loop makes
        rank = train.get_context().get_world_rank()
        Path(config["out"], f"rank{rank}.json").write_text(json.dumps(metrics))
        train.report(metrics)

    def startup(config):
        save(config, {"rank": train.get_context().get_world_rank()})

    def ddp(config):
        rank = train.get_context().get_world_rank()
        save(config, {"steps_per_s": mlp_steps(rank, config["steps"], config["warmup"],
                                               prepare_model)})

    def ingest(config):
        import torch

        torch.set_num_threads(1)
        shard = train.get_dataset_shard("train")
        started, rows = time.perf_counter(), 0
        for batch in shard.iter_torch_batches(batch_size=1024):
            rows += len(batch["f0"])
        save(config, {"rows": rows, "started": started, "ended": time.perf_counter()})

    return {"startup": startup, "ddp": ddp, "ingest": ingest}


def make_parquet(rows: int, files: int) -> str:
    """The ingest row's dataset: ``files`` Parquet files of 8 float32 columns (made once)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = PARQUET / f"{rows}-{files}"
    if folder.exists() and len(list(folder.glob("*.parquet"))) == files:
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per = rows // files
    for i in range(files):
        table = pa.table({f"f{c}": rng.random(per, dtype=np.float32) for c in range(8)})
        pq.write_table(table, folder / f"part-{i:03d}.parquet")
    return str(folder)


# --- one row in this process -----------------------------------------------------------

def run_row(system: str, row: str, size: dict[str, int]) -> dict:
    if system == "torch":
        return {"steps_per_s": bare_ddp(size)}
    if system == "sluice":
        import sluice as runtime
        import sluice.data as data
        from sluice import train
        from sluice.train.torch import TorchTrainer, prepare_model
        runtime.init(num_cpus=NUM_CPUS)
    else:
        import ray as runtime
        import ray.data as data
        from ray import train
        from ray.train.torch import TorchTrainer, prepare_model
        runtime.init(num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix=f"bench-train-{system}-")
    try:
        loop = loops(train, prepare_model)[row]
        datasets, per_rank = None, 1.0
        if row == "ingest":  # half a CPU each: the other CPU reads (Ray Data waits for ever
            per_rank = 0.5  # for a CPU the gang holds)
            datasets = {"train": data.read_parquet(make_parquet(size["rows"], size["files"]))}
        out = tempfile.mkdtemp(prefix="bench-train-out-")
        trainer = TorchTrainer(loop, train_loop_config={"steps": size["steps"],
                                                        "warmup": size["warmup"], "out": out},
                               scaling_config=train.ScalingConfig(
                                   num_workers=2, resources_per_worker={"CPU": per_rank}),
                               run_config=train.RunConfig(name="bench", storage_path=storage),
                               datasets=datasets)
        started = time.perf_counter()
        trainer.fit()
        record: dict[str, Any] = {"seconds": time.perf_counter() - started}
        ranks = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
        if len(ranks) != 2:
            raise RuntimeError(f"{len(ranks)} rank(s) of 2 wrote their figures")
        if row == "ddp":
            record["steps_per_s"] = ranks[0]["steps_per_s"]
        if row == "ingest":
            rows = sum(r["rows"] for r in ranks)
            span = max(r["ended"] for r in ranks) - min(r["started"] for r in ranks)
            record.update(rows=rows, rows_per_s=rows / span)
        return record
    finally:
        runtime.shutdown()
        import shutil
        shutil.rmtree(storage, ignore_errors=True)


def _bare_rank(rank: int, size: dict[str, int], port: int, out: Any) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rate = mlp_steps(rank, size["steps"], size["warmup"], DistributedDataParallel)
    if rank == 0:
        out.put(rate)
    dist.destroy_process_group()


def bare_ddp(size: dict[str, int]) -> float:
    """The ddp row's loop in two processes of plain torch.distributed (no framework)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    out = context.Queue()
    mp.start_processes(_bare_rank, args=(size, port, out), nprocs=2, join=True,
                       start_method="spawn")
    return float(out.get())


def run_one(system: str, row: str, quick: bool) -> int:
    """One row on one system in this process: the result as the last stdout line."""
    package = system if system != "torch" else "torch"
    return print_record(lambda: run_row(system, row, sizes(quick)), package)


# --- the runner -------------------------------------------------------------------------

LINES = (("startup", "seconds", "fit() of a 2-rank loop that reports once: seconds", "le", 0.2),
         ("ddp", "steps_per_s", "2-rank DDP on an MLP: steps/s", "ge", None),
         ("ingest", "rows_per_s", "2-rank ingest of a Parquet dataset: rows/s", "ge", 2.0))


def table(records: list[dict]) -> tuple[str, dict]:
    out = ["| row | Ray Train | sluice.train | torch.distributed | sluice / Ray | target |",
           "|---|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for row, key, title, sense, target in LINES:
        ray, ours, bare = (median_of(records, s, row, key) for s in ("ray", "sluice", "torch"))
        if ours is None and ray is None:
            continue
        ratio = ours / ray if ours and ray else None
        if row == "ddp":
            of_bare = ours / bare if ours and bare else None
            parts = []
            if of_bare is not None:
                parts.append(f"≥ 0.95x bare: {'met' if of_bare >= 0.95 else 'missed'} "
                             f"({of_bare:.3f})")
            if ratio is not None:
                parts.append(f"≥ Ray: {'met' if ratio >= 1 else 'missed'}")
            verdict = "; ".join(parts)
            summary[row] = {"ray": ray, "sluice": ours, "torch": bare, "of_ray": ratio,
                            "of_bare": of_bare}
        else:
            verdict = "" if ratio is None or target is None else (
                f"{'≤' if sense == 'le' else '≥'} {target:g}x Ray: "
                f"{'met' if (ratio <= target if sense == 'le' else ratio >= target) else 'missed'}")
            summary[row] = {"ray": ray, "sluice": ours, "ratio": ratio, "target": target}
        out.append(f"| {title} | {_fmt(ray)} | {_fmt(ours)} | {_fmt(bare)} | "
                   f"{'-' if ratio is None else f'{ratio:.3g}'} | {verdict} |")
    return "\n".join(out), summary


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "benchmarks.train", __doc__, SYSTEMS, ROWS, TIMEOUT_S,
                      "smaller rows, for a smoke run")
    if args.one:
        return run_one(*args.one, args.quick)
    runs = []
    for round_index in range(args.rounds):
        order = args.systems if round_index % 2 == 0 else list(reversed(args.systems))
        runs += [(round_index, row, s) for row in args.rows for s in order
                 if s in ROW_SYSTEMS[row]]
    if "ingest" in args.rows:
        size = sizes(args.quick)
        make_parquet(size["rows"], size["files"])  # (once, before any row is timed)
    started = dt.datetime.now(dt.timezone.utc)
    records = []
    for number, (round_index, row, system) in enumerate(runs, 1):
        settled_s = settle()
        record = run_process("benchmarks.train", system, row, args.quick, args.timeout)
        record.update(round=round_index, row=row, system=system, settled_s=settled_s)
        records.append(record)
        shown = record.get("error") or ", ".join(
            f"{k}={record[k]:.4g}" for k in ("seconds", "steps_per_s", "rows_per_s")
            if k in record)
        print(f"[{number}/{len(runs)}] round {round_index + 1} {row:<8} {system:<6} {shown}",
              file=sys.stderr, flush=True)
    text, summary = table(records)
    print(text)
    whole = args.rows == list(ROWS) and args.systems == list(SYSTEMS)
    name = "train-quick" if args.quick else ("train" if whole else "train-subset")
    out = Path(args.out) if args.out else RESULTS / f"{name}.json"
    write_results(out, {"started": started.isoformat(), "rounds": args.rounds,
                        "quick": args.quick, "sizes": sizes(args.quick), "summary": summary,
                        "records": records, "commit": git_commit(),
                        "machine": {"cpus": os.cpu_count(),
                                    "python": platform.python_version()}})
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
