"""A worker's cold start: from asking for a worker to the result of its first (empty) task.

``python -m benchmarks.worker_start [N]`` times N workers forked from a template
(:class:`sluice.executor.process.WorkerTemplate`, what the runtime uses) and N
started as fresh interpreters (:func:`sluice.executor.process.spawn_worker`), and
prints the median, fastest and slowest of each. The template's own start, once
per runtime, is printed apart.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from sluice.executor import protocol as P
from sluice.executor.calls import dumps_function, encode_call
from sluice.executor.process import WorkerTemplate, spawn_worker
from sluice.store import shm


def empty() -> int:
    return 1


def first_result_ms(spawn: Callable[[str, int], tuple[Any, Any]], index: int) -> float:
    """Milliseconds from ``spawn`` to the DONE of one empty task on the new worker."""
    fn_id, fn_bytes = dumps_function(empty, "empty")
    blob = encode_call("empty", (), {}, None)[0]
    start = time.perf_counter()
    proc, conn = spawn(shm.new_session_id(), index)
    conn.send_bytes(P.pack([(P.TASK, 1, fn_id, fn_bytes, blob, [], [1], False, None, "empty")]))
    reply = P.unpack(conn.recv_bytes())
    elapsed = 1000 * (time.perf_counter() - start)
    if reply[-1][0] != P.DONE:
        raise RuntimeError(f"the worker answered {reply!r}, not DONE")
    conn.send_bytes(P.pack([(P.SHUTDOWN,)]))
    proc.wait()
    conn.close()
    return elapsed


def summary(name: str, times: list[float]) -> str:
    return (f"{name}: median {statistics.median(times):.1f} ms "
            f"(fastest {min(times):.1f}, slowest {max(times):.1f}) over {len(times)}")


def main(n: int) -> None:
    start = time.perf_counter()
    template = WorkerTemplate()
    try:
        first = first_result_ms(template.spawn, 0)
        print(f"template start + its first worker: {1000 * (time.perf_counter() - start):.0f} ms "
              f"(the worker: {first:.1f} ms)")
        print(summary("forked from the template", [first_result_ms(template.spawn, i + 1)
                                                   for i in range(n)]))
    finally:
        template.close()
    print(summary("fresh interpreter", [first_result_ms(spawn_worker, i + 1) for i in range(n)]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
