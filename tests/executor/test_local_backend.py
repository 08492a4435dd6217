"""The local backend: worker processes, parallelism, resource accounting, GPUs, nested tasks."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from tests.executor.helpers import wait_until


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    # One runtime for the module: 2 CPUs, 2 logical GPUs and one custom "slot".
    sluice.init(num_cpus=2, num_gpus=2, resources={"slot": 1})
    yield
    sluice.shutdown()


@sluice.remote
def getpid() -> int:
    return os.getpid()


@sluice.remote
def interval(seconds: float) -> tuple[float, float, int]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), os.getpid()


def meet(folder: str, me: str, other: str) -> None:
    """Say ``me`` arrived (a file in ``folder``) and wait for ``other``: two tasks that meet
    both return only if they run at the same time (else one fails after a minute)."""
    Path(folder, me).touch()
    if not wait_until(Path(folder, other).exists, timeout=60):
        raise TimeoutError(f"{me} waited 60 s for {other}: the two tasks did not run at once")


@sluice.remote
def met(folder: str, me: str, other: str) -> int:
    meet(folder, me, other)
    return os.getpid()


@sluice.remote(num_gpus=1)
def gpu_view(meeting: tuple[str, str, str] | None = None) -> tuple[str | None, list[int]]:
    if meeting is not None:
        meet(*meeting)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), sluice.get_gpu_ids()


@sluice.remote
def cpu_gpu_view() -> list[int]:
    return sluice.get_gpu_ids()


@sluice.remote
def fan_in(n: int) -> list[int]:
    """A task that submits tasks and waits for them."""
    return sluice.get([square.remote(i) for i in range(n)], timeout=60)


@sluice.remote
def square(x: int) -> int:
    return x * x


@sluice.remote
def fib(n: int) -> int:
    """Each level blocks on two children: a deep tree of tasks blocked in get."""
    if n < 2:
        return n
    return sum(sluice.get([fib.remote(n - 1), fib.remote(n - 2)], timeout=60))


def overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_tasks_run_in_worker_processes_not_the_driver() -> None:
    pids = set(sluice.get([getpid.remote() for _ in range(8)]))
    assert os.getpid() not in pids
    for pid in pids:
        assert os.path.exists(f"/proc/{pid}")


def test_two_tasks_run_in_parallel_on_two_cpus(tmp_path: Path) -> None:
    # Each waits for the other to arrive: both return only if they ran at the same time.
    a, b = sluice.get([met.remote(str(tmp_path), "a", "b"), met.remote(str(tmp_path), "b", "a")],
                      timeout=90)
    assert a != b  # in two worker processes


def test_tasks_needing_the_one_slot_never_overlap() -> None:
    slotted = interval.options(resources={"slot": 1})
    a, b = sluice.get([slotted.remote(0.3), slotted.remote(0.3)], timeout=30)
    assert not overlaps(a, b), f"two tasks holding the only 'slot' ran at once: {a}, {b}"
    assert sluice.available_resources()["slot"] == 1  # given back when they finished


def test_cluster_resources_report_what_init_was_given() -> None:
    total = sluice.cluster_resources()
    assert (total["CPU"], total["GPU"], total["slot"]) == (2, 2, 1)


def test_a_gpu_task_sees_one_cuda_visible_device_and_get_gpu_ids_agrees() -> None:
    visible, ids = sluice.get(gpu_view.remote(), timeout=30)
    assert visible in ("0", "1")
    assert ids == [int(visible)]


def test_two_concurrent_gpu_tasks_get_different_gpus(tmp_path: Path) -> None:
    # They meet, so they run at once (as two 1-GPU tasks on 2 GPUs may).
    folder = str(tmp_path)
    (va, ia), (vb, ib) = sluice.get([gpu_view.remote((folder, "a", "b")),
                                     gpu_view.remote((folder, "b", "a"))], timeout=90)
    assert len(ia) == len(ib) == 1 and ia != ib
    assert {va, vb} == {"0", "1"}


def test_a_task_without_gpus_sees_no_gpu_ids_even_after_gpu_tasks_ran(tmp_path: Path) -> None:
    folder = str(tmp_path)  # they meet: both workers ran one
    sluice.get([gpu_view.remote((folder, "a", "b")), gpu_view.remote((folder, "b", "a"))], timeout=90)
    ids = sluice.get([cpu_gpu_view.remote() for _ in range(4)], timeout=30)
    assert ids == [[], [], [], []], "get_gpu_ids() must name only the GPUs granted to this task"


def test_a_task_can_submit_tasks_and_get_their_results() -> None:
    assert sluice.get(fan_in.remote(10), timeout=60) == [i * i for i in range(10)]


def test_tasks_blocked_in_get_do_not_starve_the_pool() -> None:
    # Two blocked parents hold both CPU workers; their children must still run.
    assert sluice.get([fan_in.remote(3), fan_in.remote(3)], timeout=60) == [[0, 1, 4]] * 2


def test_recursive_fan_out_of_depth_four_completes_without_deadlock() -> None:
    assert sluice.get(fib.remote(5), timeout=90) == 5  # fib(5) nests gets four levels deep


class UnpickleCounter:
    """Counts, per process, how many times an instance was unpickled."""

    unpickled = 0

    def __init__(self, payload: bytes):
        self.payload = payload

    def __setstate__(self, state: dict) -> None:
        type(self).unpickled += 1
        self.__dict__.update(state)


def test_a_function_and_its_large_closure_are_unpickled_once_per_worker() -> None:
    captured = UnpickleCounter(b"x" * 4_000_000)

    def report(_: int) -> tuple[int, int, int]:
        return os.getpid(), type(captured).unpickled, len(captured.payload)

    task = sluice.remote(report)
    results = sluice.get([task.remote(i) for i in range(30)], timeout=30)
    per_worker: dict[int, set[int]] = defaultdict(set)
    for pid, count, size in results:
        assert size == 4_000_000
        per_worker[pid].add(count)
    assert all(counts == {1} for counts in per_worker.values()), dict(per_worker)


def test_extra_workers_started_during_nested_gets_are_retired_afterwards() -> None:
    from sluice.executor import context

    assert sluice.get(fan_in.remote(6), timeout=60) == [i * i for i in range(6)]
    assert sluice.get([fan_in.remote(4) for _ in range(3)], timeout=60) == [[0, 1, 4, 9]] * 3
    rt = context.current()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with rt.scheduler.locked():
            pool = [w for w in rt.scheduler.workers if w.alive]
        if len(pool) <= 2:
            break
        sluice.get(square.remote(3), timeout=30)  # results drive the bookkeeping
    assert len(pool) <= 2, f"{len(pool)} pool workers remain for 2 CPUs"
    assert sluice.get([square.remote(i) for i in range(20)], timeout=30)[-1] == 361


# -- the memory resource -----------------------------------------------------------------------

@sluice.remote
class MemoryHolder:
    def ping(self) -> int:
        return 1


def test_memory_is_a_logical_resource_a_node_has_70_percent_of_available_memory_of() -> None:
    from sluice.executor.resources import default_node_memory

    total = sluice.cluster_resources()["memory"]
    assert 0 < total and abs(total - default_node_memory()) < 0.2 * total  # memory moves a bit
    half = int(total * 0.6)
    holder = MemoryHolder.options(memory=half).remote()
    assert sluice.get(holder.ping.remote(), timeout=60) == 1
    assert wait_until(lambda: sluice.available_resources()["memory"] == total - half)
    # A task asking for more than is left waits; it runs once the actor gives its share back.
    ref = getpid.options(memory=half).remote()
    ready, _ = sluice.wait([ref], timeout=0.2)
    assert not ready
    sluice.kill(holder)
    assert isinstance(sluice.get(ref, timeout=60), int)


def test_memory_beyond_the_node_is_refused_at_submit() -> None:
    with pytest.raises(sluice.exceptions.InfeasibleResourceError, match="'memory'"):
        getpid.options(memory=1 << 60).remote()
    with pytest.raises(ValueError, match="memory=-1"):
        getpid.options(memory=-1)
    with pytest.raises(ValueError, match="both given"):
        getpid.options(memory=1, resources={"memory": 2})
