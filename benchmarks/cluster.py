"""Cluster mode on a 3-node loopback cluster, against the embedded local runtime.

``python -m benchmarks.cluster [--reps 5]`` measures, in one run:

* **tasks**: 10,000 no-op tasks submitted and gathered, on ``sluice.init(num_cpus=3)``
  and on a head (1 CPU node) + 2 node daemons (1 CPU each) started with
  :class:`~sluice.executor.cluster.local.LocalCluster`. Target: cluster within 2x of local.
* **pull**: a 200 MB array made on node 0, read by a task pinned to node 1: node 1's
  store pulls it over Arrow Flight, the task maps it. The rate is 200 MB over the task's
  round trip minus the same task reading a local 200 MB array (the map and the sum cost
  the same on both). Target: over 1 GB/s.

With Ray installed (``make bench`` installs it), the same two measurements run on a 3-node Ray
cluster on loopback (``ray.cluster_utils.Cluster``, 1 CPU per node; the same code, since
sluice's API is Ray's), so both compare with Ray's from the same run.

Each figure is the best of ``--reps`` (default 5), after one untimed pull of the same size;
the results go to ``benchmarks/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

import sluice
from sluice.executor.cluster.local import LocalCluster

TASKS = 10_000
PULL_BYTES = 200_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"


@sluice.remote
def noop() -> None:
    return None


@sluice.remote
def make(n: int, seed: int) -> np.ndarray:
    return np.full(n, seed, dtype=np.uint8)


@sluice.remote
def touch(a: np.ndarray) -> int:
    return int(a[:: 1 << 16].sum())  # maps the object; reads a page in every 64 KB


def time_tasks(rt: Any, noop_fn: Any, reps: int) -> float:
    """Best time of 10,000 no-op tasks on ``rt`` (sluice or ray: the same API)."""
    rt.get([noop_fn.remote() for _ in range(200)])  # workers up, function exported
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        rt.get([noop_fn.remote() for _ in range(TASKS)])
        best = min(best, time.perf_counter() - start)
    return best


def time_pull(rt: Any, make_fn: Any, touch_fn: Any, reps: int) -> tuple[float, float]:
    """(seconds of a remote read, seconds of the same read on the object's own node)."""
    on0, on1 = {"resources": {"n0": 0.01}}, {"resources": {"n1": 0.01}}
    # Warm-up, not timed: one pull of the same size, so node 1's allocator holds warm pages
    # (the first large transfer of a process pays its page faults), as the suite warms runtimes.
    rt.get(touch_fn.options(**on1).remote(make_fn.options(**on0).remote(PULL_BYTES, 0)))
    remote, local = float("inf"), float("inf")
    for rep in range(reps):
        far = make_fn.options(**on0).remote(PULL_BYTES, rep + 1)
        near = make_fn.options(**on1).remote(PULL_BYTES, rep + 1)
        rt.wait([far, near], num_returns=2)
        start = time.perf_counter()
        rt.get(touch_fn.options(**on1).remote(near))
        local = min(local, time.perf_counter() - start)
        start = time.perf_counter()
        rt.get(touch_fn.options(**on1).remote(far))
        remote = min(remote, time.perf_counter() - start)
        del far, near
    return remote, local


def run_ray(reps: int) -> dict | None:
    """The same two measurements on a 3-node Ray cluster on loopback (``ray.cluster_utils``)."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        return None
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for name in ("n0", "n1"):
        cluster.add_node(num_cpus=1, resources={name: 1})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        noop_fn, make_fn, touch_fn = (ray.remote(f._function) for f in (noop, make, touch))
        tasks = time_tasks(ray, noop_fn, reps)
        remote, local = time_pull(ray, make_fn, touch_fn, reps)
        ray.shutdown()
    finally:
        cluster.shutdown()
    return {"tasks_s": tasks, "pull_task_s": remote, "same_node_task_s": local,
            "pull_gb_per_s": PULL_BYTES / max(remote - local, 1e-9) / 1e9, "version": ray.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sluice.init(num_cpus=3)
    local_tasks = time_tasks(sluice, noop, args.reps)
    sluice.shutdown()
    cluster = LocalCluster(nodes=2, cpus=1, head_cpus=1, cwd=Path(__file__).resolve().parents[1],
                           node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']])
    try:
        sluice.init(address=cluster.address)
        cluster_tasks = time_tasks(sluice, noop, args.reps)
        remote, local = time_pull(sluice, make, touch, args.reps)
        sluice.shutdown()
    finally:
        cluster.stop()
    ray_result = run_ray(args.reps)
    rate = PULL_BYTES / max(remote - local, 1e-9) / 1e9
    result = {
        "tasks_local_s": local_tasks, "tasks_cluster_s": cluster_tasks,
        "tasks_ratio": cluster_tasks / local_tasks, "tasks_target": "<= 2x local",
        "pull_bytes": PULL_BYTES, "pull_task_s": remote, "same_node_task_s": local,
        "pull_gb_per_s": rate, "pull_target": "> 1 GB/s", "ray_cluster": ray_result,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load": os.getloadavg()},
        "commit": _commit(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    ray_tasks = f"{ray_result['tasks_s']:.3f} s" if ray_result else "- (Ray not installed)"
    ray_pull = f"{ray_result['pull_gb_per_s']:.2f} GB/s" if ray_result else "-"
    vs_ray = f"{cluster_tasks / ray_result['tasks_s']:.2f}" if ray_result else "-"
    print("| cluster (3 loopback nodes) | sluice local | sluice cluster | Ray cluster | verdict |")
    print("|---|---|---|---|---|")
    print(f"| {TASKS:,} no-op tasks | {local_tasks:.3f} s | {cluster_tasks:.3f} s "
          f"({cluster_tasks / local_tasks:.2f}x local, {vs_ray} of Ray) | {ray_tasks} | target <= 2x "
          f"local: {'met' if cluster_tasks <= 2 * local_tasks else 'missed'} |")
    print(f"| 200 MB pulled by a task on another node | {local:.3f} s (same node) | {remote:.3f} s "
          f"({rate:.2f} GB/s) | {ray_pull} | target > 1 GB/s: {'met' if rate > 1 else 'missed'} |")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
