"""One conformance suite for the core API: every test runs locally, on a sluice cluster and on Dask.

The ``shared_cluster`` fixture is module-scoped and parametrized, so pytest runs
every test on ``local`` (``sluice.init(num_cpus=3)``) first, then every test on
``cluster`` (a head with its own 1-CPU node plus two 1-CPU node daemons, each a
``sluice start`` process), then on ``dask`` (three 1-CPU worker processes). All offer
3 CPUs, so each test asserts the same exact results on all. A test that can break its
backend (it kills a worker) asks for ``own_backend`` and runs on a fresh one instead.

The Backend protocol's queries (nodes, object locations and sizes, store
capacity, named actors, resources) are checked by one function run twice per
backend: in the driver, and inside a task, where the in-worker (nested) backend
answers; a few API tests run inside a task too.

Every function and class used by a task lives at module level here: cluster
workers import this module by name (the daemons run with the repo root on
``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import sluice
from sluice import InputNode, MultiOutputNode
from sluice.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    InfeasibleResourceError,
    SluiceError,
    TaskCancelledError,
    TaskError,
    UnsupportedOnBackendError,
)
from sluice.executor import api
from sluice.executor.backend import Backend, ObjectLocation
from tests.cluster.conftest import LocalCluster
from tests.compiler import dag_example

BIG = 5_000_000
"""Elements of the 40 MB float64 array put by the driver."""
RESULT = 2_500_000
"""Elements of the 20 MB float64 array a task returns."""
HOLD_LIMIT_S = 60
"""How long a task held by the test waits for its gate before it gives up (and fails)."""
NODES = {"local": 1, "cluster": 3, "dask": 3}
"""How many nodes each backend has: the local runtime is one; the others three 1-CPU ones."""
DEADLINE_S = 60


@contextlib.contextmanager
def started(kind: str) -> Iterator[dict]:
    """Start what a 3-CPU backend of ``kind`` runs on (nothing for ``local``) and yield the
    ``sluice.init`` arguments that use it; stopped when the block ends."""
    if kind == "local":
        yield {"num_cpus": 3}
    elif kind == "cluster":
        cluster = LocalCluster(nodes=2)
        try:
            yield {"address": cluster.address}
        finally:
            cluster.stop()
    else:
        import distributed

        with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True,
                                      resources={"CPU": 1}, dashboard_address=":0") as cluster:
            yield {"backend": "dask", "address": cluster.scheduler_address}


@pytest.fixture(scope="module", params=["local", "cluster", "dask"])
def shared_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict]]:
    """The backend the module's tests share, as (kind, ``sluice.init`` arguments): the
    embedded local runtime, a 3-node sluice cluster or a 3-worker dask.distributed cluster."""
    with started(request.param) as init_args:
        try:
            yield request.param, init_args
        finally:
            sluice.shutdown()


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest, shared_cluster: tuple[str, dict]) -> Iterator[str]:
    """Every test's runtime: the driver of the shared backend (connected on first use and
    kept for the next test) or, for a test that asks for ``own_backend``, a fresh one."""
    kind, shared_args = shared_cluster
    if "own_backend" not in request.fixturenames:
        if not sluice.is_initialized():
            sluice.init(**shared_args)
        yield kind
        return
    sluice.shutdown()  # the shared backend stays up; the next test connects to it again
    with started(kind) as own_args:
        sluice.init(**own_args)
        try:
            yield kind
        finally:
            sluice.shutdown()


@pytest.fixture
def own_backend(backend: str) -> str:
    """Ask for this in a test that can break its backend (it kills a worker; on Dask a forced
    cancel restarts one, synchronously): it gets a backend of its own, started for it and
    stopped after it, so the damage never reaches the next test."""
    return backend


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The file tasks held with ``held_until`` wait for; opened when the test ends at the
    latest, so no held task outlives its test."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.01)


# -- functions and classes the tasks run ------------------------------------------------------

class ConformanceError(ValueError):
    """An application error defined by the user's module (not a builtin)."""


@sluice.remote
def add(a, b=0):
    return a + b


@sluice.remote
def inc(x: int) -> int:
    return x + 1


@sluice.remote
def square(x: int) -> int:
    return x * x


@sluice.remote
def scale(x: int, by: int = 2) -> int:
    return x * by


@sluice.remote
def describe(x, items, *, key=None) -> dict:
    """Report how the arguments arrived: values or refs."""
    inner = items[0]
    return {
        "x": x,
        "key": key,
        "inner_type": type(inner).__name__,
        "inner_value": sluice.get(inner, timeout=30) if isinstance(inner, sluice.ObjectRef) else None,
    }


@sluice.remote
def total_of_refs(refs: list) -> int:
    """Sum the values behind a list of refs the task received as refs."""
    assert all(isinstance(r, sluice.ObjectRef) for r in refs), [type(r) for r in refs]
    return sum(sluice.get(refs, timeout=30))


@sluice.remote(num_returns=2)
def divmod_task(a: int, b: int):
    return a // b, a % b


@sluice.remote
def fan_in(n: int) -> list[int]:
    """A task that submits tasks and waits for them."""
    return sluice.get([square.remote(i) for i in range(n)], timeout=60)


@sluice.remote
def array_sum(a: np.ndarray) -> tuple[float, bool, tuple]:
    return float(a.sum()), bool(a.flags.writeable), a.shape


@sluice.remote
def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) * 2.0


@sluice.remote
def table_summary(t: pa.Table) -> tuple[int, int, list[str]]:
    return t.num_rows, pc.sum(t["x"]).as_py(), t.column_names


@sluice.remote
def with_doubled(t: pa.Table) -> pa.Table:
    return t.append_column("x2", pc.multiply(t["x"], 2))


@sluice.remote
def held_until(gate: str, value=None, started: str | None = None):
    """``value`` once the file ``gate`` exists: the test holds the task running until it opens
    the gate (it touches ``started`` first, if given). It fails if the gate stays shut."""
    if started is not None:
        Path(started).touch()
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise ConformanceError(f"the gate {gate} stayed shut for {HOLD_LIMIT_S} s")
        time.sleep(0.01)
    return value


@sluice.remote
def wait_for_file(started: str, release: str) -> str:
    """Say it started, then hold its CPU until the file ``release`` exists."""
    Path(started).write_text("started")
    deadline = time.monotonic() + 120
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


@sluice.remote
def touch(path: str) -> str:
    Path(path).write_text("ran")
    return path


@sluice.remote
def fail(message: str) -> None:
    raise ConformanceError(message)


@sluice.remote
def flaky(counter_name: str) -> int:
    """Fails on its first two attempts; counts attempts in the named actor ``counter_name``."""
    attempt = sluice.get(sluice.get_actor(counter_name).add.remote(1), timeout=30)
    if attempt < 3:
        raise ConformanceError(f"attempt {attempt} failed")
    return attempt


@sluice.remote
def crash_on_first_attempt(marker: str) -> int:
    """Kills its own worker on the first attempt (counted in the file ``marker``)."""
    path = Path(marker)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    if attempt == 1:
        os._exit(1)
    return attempt


@sluice.remote(num_gpus=1)
def needs_gpu() -> str:
    return "unreachable"


@sluice.remote
class Counter:
    def __init__(self, start: int = 0):
        self.n = start
        self.seen: list[int] = []

    def add(self, x: int) -> int:
        self.n += x
        self.seen.append(x)
        return self.n

    def history(self) -> list[int]:
        return self.seen

    def slow_value(self, seconds: float) -> int:
        time.sleep(seconds)
        return self.n


@sluice.remote(max_concurrency=2, max_restarts=0)
class Rendezvous:
    """Two calls can meet only if the actor runs them at the same time."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=30)

    def meet(self) -> int:
        return self.barrier.wait()


@sluice.remote
class Doubler:
    def double(self, v: int) -> int:
        return 2 * v


@sluice.remote
def fill_queue(q, n: int) -> int:
    q.put_nowait_batch(list(range(n)))
    return n


@sluice.remote(max_restarts=1, max_task_retries=1)
class CrashOnce:
    """Its process dies on the first call that finds no marker file (and leaves one)."""

    def run(self, marker: str, value: int) -> int:
        if not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)
        return value


@sluice.remote
def call_actor_from_task(counter, value: int) -> list[int]:
    sluice.get(counter.add.remote(value), timeout=30)
    return sluice.get(counter.history.remote(), timeout=30)


def dag_example_expected(n: int) -> int:
    """What ``dag_example``'s main output computes, in plain Python."""
    xs = list(range(n))
    return 10 * (sum(x for x in xs if x % 2 == 0) - sum(x for x in xs if x % 2 == 1)) + 1


# -- remote functions and arguments -----------------------------------------------------------

def test_remote_function_with_positional_and_keyword_arguments() -> None:
    ref = add.remote(2, 3)
    assert isinstance(ref, sluice.ObjectRef)
    assert sluice.get(ref, timeout=30) == 5
    assert sluice.get(add.remote(2, b=40), timeout=30) == 42
    assert sluice.get(add.remote("a", b="b"), timeout=30) == "ab"


def test_top_level_refs_arrive_as_values_and_nested_refs_arrive_as_refs() -> None:
    x, inner, key = sluice.put(3), sluice.put("inside"), sluice.put("kw")
    got = sluice.get(describe.remote(x, [inner], key=key), timeout=30)
    assert got == {"x": 3, "key": "kw", "inner_type": "ObjectRef", "inner_value": "inside"}
    refs = [square.remote(i) for i in range(5)] + [sluice.put(100)]
    assert sluice.get(total_of_refs.remote(refs), timeout=30) == 0 + 1 + 4 + 9 + 16 + 100


def test_num_returns_two_gives_two_refs() -> None:
    q, r = divmod_task.remote(17, 5)
    assert isinstance(q, sluice.ObjectRef) and isinstance(r, sluice.ObjectRef)
    assert sluice.get([q, r], timeout=30) == [3, 2]
    assert sluice.get(add.remote(q, r), timeout=30) == 5


def test_chained_tasks_pass_results_without_the_driver() -> None:
    assert sluice.get(add.remote(square.remote(3), square.remote(4)), timeout=30) == 25
    ref = sluice.put(0)
    for _ in range(10):
        ref = inc.remote(ref)
    assert sluice.get(ref, timeout=30) == 10


def test_a_task_can_submit_tasks_and_blocked_parents_do_not_starve_the_cpus() -> None:
    assert sluice.get(fan_in.remote(10), timeout=60) == [i * i for i in range(10)]
    # Three parents blocked in get hold all three CPUs; their children must still run.
    assert sluice.get([fan_in.remote(3) for _ in range(3)], timeout=60) == [[0, 1, 4]] * 3


def test_two_hundred_small_tasks_gathered_with_one_get() -> None:
    refs = [square.remote(i) for i in range(200)]
    assert sluice.get(refs, timeout=60) == [i * i for i in range(200)]


# -- objects: put, get, large arrays, Arrow ---------------------------------------------------

def test_put_and_get_of_a_small_value() -> None:
    value = {"a": [1, 2, 3], "b": ("x", None), "c": 1.5}
    ref = sluice.put(value)
    assert isinstance(ref, sluice.ObjectRef)
    assert sluice.get(ref, timeout=30) == value
    assert sluice.get(add.remote(sluice.put(40), 2), timeout=30) == 42


def test_put_and_get_of_a_40_mb_array_returns_equal_read_only_values() -> None:
    array = np.arange(BIG, dtype=np.float64)
    got = sluice.get(sluice.put(array), timeout=30)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    assert np.array_equal(got, array)
    assert not got.flags.writeable


def test_a_task_sums_a_40_mb_put_array_it_receives_read_only() -> None:
    ref = sluice.put(np.arange(BIG, dtype=np.float64))
    results = sluice.get([array_sum.remote(ref) for _ in range(3)], timeout=60)
    assert results == [(BIG * (BIG - 1) / 2, False, (BIG,))] * 3


def test_a_20_mb_array_returned_by_a_task_reads_back_equal() -> None:
    got = sluice.get(make_array.remote(RESULT), timeout=60)
    assert isinstance(got, np.ndarray) and got.shape == (RESULT,)
    assert np.array_equal(got, np.arange(RESULT, dtype=np.float64) * 2.0)
    assert not got.flags.writeable


def test_an_arrow_table_round_trips_through_put_and_tasks() -> None:
    n = 100_000
    table = pa.table({"x": np.arange(n), "s": [f"row {i}" for i in range(n)]})
    table = table.replace_schema_metadata({"owner": "etl"})
    got = sluice.get(sluice.put(table), timeout=30)
    assert isinstance(got, pa.Table)
    assert got.equals(table, check_metadata=True)
    ref = sluice.put(table)
    assert sluice.get(table_summary.remote(ref), timeout=30) == (n, n * (n - 1) // 2, ["x", "s"])
    doubled = sluice.get(with_doubled.remote(ref), timeout=30)
    assert doubled.column_names == ["x", "s", "x2"]
    assert doubled["x2"].to_pylist() == [2 * i for i in range(n)]
    assert doubled.select(["x", "s"]).equals(table)


# -- wait, timeouts, errors, retries, cancel --------------------------------------------------

def test_wait_returns_ready_and_pending_in_input_order_and_honours_its_timeout(gate: Path) -> None:
    quick = add.remote("qui", "ck")
    assert sluice.get(quick, timeout=60) == "quick"
    slow = held_until.remote(str(gate), "slow")  # not ready before the test opens the gate
    done = sluice.put("done")
    ready, pending = sluice.wait([slow, quick, done], num_returns=2, timeout=60)
    assert (ready, pending) == ([quick, done], [slow])
    ready, pending = sluice.wait([done, slow, quick], num_returns=1, timeout=60)
    assert (ready, pending) == ([done], [slow, quick])
    # The gate is shut: only the timeout can end this wait (else it lasts until slow fails).
    ready, pending = sluice.wait([slow, done], num_returns=2, timeout=0.1)
    assert (ready, pending) == ([done], [slow])
    gate.touch()
    ready, pending = sluice.wait([slow, done], num_returns=2, timeout=60)
    assert (ready, pending) == ([slow, done], [])
    assert sluice.get(slow) == "slow"


def test_get_timeout_raises_get_timeout_error_and_a_later_get_succeeds(gate: Path) -> None:
    ref = held_until.remote(str(gate), "late")
    with pytest.raises(GetTimeoutError, match="timed out") as info:
        sluice.get(ref, timeout=0.1)  # the gate is shut: only the timeout can end this get
    assert isinstance(info.value, TimeoutError)
    gate.touch()
    assert sluice.get(ref, timeout=60) == "late"


def test_a_task_exception_is_reraised_as_its_own_type_with_its_message() -> None:
    with pytest.raises(ConformanceError, match="bad row 7") as info:
        sluice.get(fail.remote("bad row 7"), timeout=30)
    assert isinstance(info.value, TaskError)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "task fail failed" in message and "Traceback" in message


def test_retry_exceptions_true_retries_until_the_task_succeeds() -> None:
    counter = Counter.options(name="flaky-attempts").remote()
    task = flaky.options(max_retries=3, retry_exceptions=True)
    assert sluice.get(task.remote("flaky-attempts"), timeout=60) == 3
    assert sluice.get(counter.history.remote(), timeout=30) == [1, 1, 1]
    # Without retry_exceptions an application error is raised after one attempt.
    once = Counter.options(name="no-retry-attempts").remote()
    with pytest.raises(ConformanceError, match="attempt 1 failed"):
        sluice.get(flaky.options(max_retries=3).remote("no-retry-attempts"), timeout=60)
    assert sluice.get(once.history.remote(), timeout=30) == [1]
    sluice.kill(counter)
    sluice.kill(once)


def test_max_retries_reruns_a_task_whose_worker_died(tmp_path: Path, own_backend: str) -> None:
    marker = tmp_path / "attempts"
    assert sluice.get(crash_on_first_attempt.options(max_retries=1).remote(str(marker)), timeout=60) == 2
    assert marker.read_text() == "2"
    assert sluice.get(square.remote(7), timeout=30) == 49  # the pool is whole again


def test_cancel_of_a_queued_task_and_of_a_running_one_raises_task_cancelled_error(
        backend: str, tmp_path: Path, gate: Path, own_backend: str) -> None:
    busy = [held_until.remote(str(gate), i) for i in range(3)]  # all three CPUs, until opened
    marker = tmp_path / "ran"
    queued = touch.remote(str(marker))
    sluice.cancel(queued)
    with pytest.raises(TaskCancelledError, match="touch was cancelled"):
        sluice.get(queued, timeout=60)
    gate.touch()
    assert sluice.get(busy, timeout=60) == [0, 1, 2]
    started, release = tmp_path / "started", tmp_path / "release"
    running = held_until.remote(str(release), started=str(started))
    wait_for(started.exists, "the task to start")
    if backend == "dask":  # Dask could stop it only by restarting its worker: refused, not done
        with pytest.raises(UnsupportedOnBackendError, match=r"cancel\(force=True\) of the running "
                                                            r"task held_until on the dask backend"):
            sluice.cancel(running, force=True)
        sluice.cancel(running)  # abandoned instead: its thread runs on until released
    else:
        sluice.cancel(running, force=True)
    with pytest.raises(TaskCancelledError, match="held_until was cancelled"):
        sluice.get(running, timeout=60)
    release.touch()
    assert sluice.get(square.remote(5), timeout=30) == 25  # the scheduler moved on
    assert not marker.exists(), "a cancelled task that had not started must never run"


# -- actors ------------------------------------------------------------------------------------

def test_an_actor_keeps_its_state_and_runs_calls_in_submission_order() -> None:
    c = Counter.remote(10)
    assert isinstance(c, sluice.ActorHandle)
    totals = sluice.get([c.add.remote(i) for i in range(50)], timeout=30)
    assert totals == [10 + sum(range(i + 1)) for i in range(50)]
    assert sluice.get(c.history.remote(), timeout=30) == list(range(50))
    sluice.kill(c)


def test_an_actor_handle_passed_into_a_task_can_be_called_there() -> None:
    c = Counter.remote()
    sluice.get(c.add.remote(1), timeout=30)
    assert sluice.get(call_actor_from_task.remote(c, 2), timeout=30) == [1, 2]
    assert sluice.get(c.history.remote(), timeout=30) == [1, 2]
    sluice.kill(c)


def test_get_actor_finds_a_named_actor_and_shares_its_state() -> None:
    c = Counter.options(name="conformance-counter").remote()
    sluice.get(c.add.remote(5), timeout=30)
    same = sluice.get_actor("conformance-counter")
    assert same == c
    assert sluice.get(same.add.remote(1), timeout=30) == 6
    with pytest.raises(ValueError, match="no actor named 'nobody-home'"):
        sluice.get_actor("nobody-home")
    sluice.kill(c)


def test_max_concurrency_runs_an_actors_calls_at_the_same_time() -> None:
    r = Rendezvous.remote()
    # Each call blocks until the other arrives: both finish only if they run at once.
    assert sorted(sluice.get([r.meet.remote(), r.meet.remote()], timeout=60)) == [0, 1]
    sluice.kill(r)


def test_kill_makes_running_and_later_calls_raise_actor_died_error() -> None:
    c = Counter.remote()
    assert sluice.get(c.add.remote(1), timeout=30) == 1
    running = c.slow_value.remote(30.0)
    sluice.kill(c)
    with pytest.raises(ActorDiedError, match="killed"):
        sluice.get(running, timeout=60)
    with pytest.raises(ActorDiedError, match="killed"):
        sluice.get(c.add.remote(1), timeout=60)


def test_an_actor_pool_maps_over_its_actors_and_a_queue_carries_a_tasks_items() -> None:
    from sluice.util import ActorPool
    from sluice.util.queue import Empty, Queue

    actors = [Doubler.remote(), Doubler.remote()]
    pool = ActorPool(actors)
    assert list(pool.map(lambda a, v: a.double.remote(v), range(100))) == [2 * v for v in range(100)]
    q = Queue(maxsize=10)
    assert sluice.get(fill_queue.remote(q, 10), timeout=60) == 10
    assert q.full() and q.get_nowait_batch(10) == list(range(10))
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    q.shutdown()
    for a in actors:
        sluice.kill(a)


def test_a_bound_method_of_a_running_actor_calls_that_actor_from_a_plan() -> None:
    c = Counter.remote(100)
    with InputNode() as inp:
        node = c.add.bind(c.add.bind(inp))  # a chain of two calls on the running actor
    assert sluice.get(node.experimental_compile().execute(1), timeout=60) == 202
    assert sluice.get(c.history.remote(), timeout=30) == [1, 101]
    sluice.kill(c)


def test_max_task_retries_reruns_a_call_whose_actor_died(backend: str, tmp_path: Path,
                                                         own_backend: str) -> None:
    if backend == "dask":
        pytest.skip("Dask actors never restart (max_restarts is refused there)")
    actor = CrashOnce.remote()
    assert sluice.get(actor.run.remote(str(tmp_path / "crashed"), 7), timeout=60) == 7


# -- lazy graphs -------------------------------------------------------------------------------

def test_a_bound_diamond_executes_to_the_plain_python_result() -> None:
    with InputNode() as inp:
        top = inc.bind(inp)
        dag = add.bind(scale.bind(top), inc.bind(top))
    plan = dag.compile()
    assert [sluice.get(plan.execute(x), timeout=30) for x in range(4)] == [
        2 * (x + 1) + (x + 2) for x in range(4)
    ]
    with InputNode() as inp:
        a = inc.bind(inp)
        multi = MultiOutputNode([a, scale.bind(a), inc.bind(a)])
    assert sluice.get(multi.execute(1), timeout=30) == [2, 4, 3]


# -- resources ---------------------------------------------------------------------------------

def test_cluster_resources_count_three_cpus() -> None:
    total = sluice.cluster_resources()
    assert total["CPU"] == 3
    assert total.get("GPU", 0) == 0


def raised_at_submit(submit) -> BaseException:
    """What ``submit()`` raised: an infeasible demand is refused in ``.remote()`` itself,
    on a cluster as locally, never left waiting for a node that will never come."""
    try:
        submit()
    except SluiceError as err:
        return err
    raise AssertionError(f"{submit} was accepted although no node has a GPU")


def test_an_infeasible_gpu_request_fails_at_once_with_infeasible_resource_error() -> None:
    err = raised_at_submit(needs_gpu.remote)
    assert isinstance(err, InfeasibleResourceError), repr(err)
    assert re.search(r"task needs_gpu: .*GPU", str(err)), str(err)
    err = raised_at_submit(lambda: square.options(num_gpus=1).remote(2))
    assert isinstance(err, InfeasibleResourceError) and isinstance(err, ValueError), repr(err)
    err = raised_at_submit(lambda: Counter.options(num_gpus=1).remote())
    assert isinstance(err, InfeasibleResourceError), repr(err)
    assert re.search(r"actor Counter: .*GPU", str(err)), str(err)
    assert sluice.get(square.remote(3), timeout=30) == 9  # nothing was left queued


# -- the Backend protocol's queries, in the driver and inside a task ----------------------------

def poll_until(condition, timeout: float = DEADLINE_S) -> bool:
    """Whether ``condition()`` came to hold before ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def check_backend_answers(backend: str) -> bool:
    """Assert what the current backend answers to each query of the Backend protocol,
    the same on every backend; returns whether it is the driver's."""
    rt = api.runtime()
    assert isinstance(rt, Backend), type(rt)
    nodes = rt.nodes()
    node_ids = {n.node_id for n in nodes}
    assert len(nodes) == len(node_ids) == NODES[backend], nodes
    assert all(n.alive and n.address and n.store_capacity > 0 for n in nodes), nodes
    assert sum(n.resources["CPU"] for n in nodes) == 3 == rt.cluster_resources()["CPU"]
    assert rt.store_capacity() == sum(n.store_capacity for n in nodes)

    folder = Path(tempfile.mkdtemp())
    big, small = sluice.put(np.arange(BIG, dtype=np.float64)), sluice.put(7)
    made = make_array.remote(RESULT)
    assert sluice.wait([made], timeout=DEADLINE_S)[0] == [made]
    pending = wait_for_file.remote(str(folder / "started"), str(folder / "release"))
    at_big, at_small, at_made, at_pending = rt.object_locations([big.id, small.id, made.id, pending.id])
    (folder / "release").write_text("go")
    assert at_big.object_id == big.id and len(at_big.node_ids) == 1 and set(at_big.node_ids) <= node_ids
    assert at_big.size is not None and BIG * 8 <= at_big.size < BIG * 8 + 100_000
    assert at_made.node_ids and set(at_made.node_ids) <= node_ids, at_made
    assert at_made.size is not None and RESULT * 8 <= at_made.size < RESULT * 8 + 100_000
    assert set(at_small.node_ids) <= node_ids and at_small.size is not None and 0 < at_small.size < 1000
    assert at_pending == ObjectLocation(pending.id), "a value not computed yet lives nowhere"
    assert sluice.get(pending, timeout=DEADLINE_S) == "released"
    shutil.rmtree(folder)

    name = f"answers-{backend}-{rt.is_driver}"
    counter = Counter.options(name=name).remote()
    ctx = rt.context_info()
    namespace = ctx["namespace"]
    info = rt.get_actor(name, namespace)
    assert info is not None and (info.actor_id, info.class_name) == (counter._actor_id, "Counter")
    assert {"add", "history", "slow_value"} <= set(info.methods)
    assert rt.get_actor("nobody-home", namespace) is None
    assert {"name": name, "namespace": namespace} in rt.named_actors(None)
    assert name in [a["name"] for a in rt.named_actors(namespace)]
    if backend != "dask":  # Dask keeps no task ids; its node ids are worker addresses
        assert ctx["node_id"] in node_ids and ctx["job_id"]
        assert (ctx["task_id"] is None) == rt.is_driver
    sluice.kill(counter)

    rt.check_feasible((("CPU", 1.0),), "probe")
    with pytest.raises(InfeasibleResourceError, match=r"^probe: .*GPU"):
        rt.check_feasible((("GPU", 1.0),), "probe")
    return rt.is_driver


@sluice.remote
def answers_inside(backend: str) -> bool:
    return check_backend_answers(backend)


def test_the_drivers_backend_answers_every_query_of_the_protocol(backend: str) -> None:
    assert check_backend_answers(backend) is True


def test_the_backend_inside_a_task_answers_the_same_queries(backend: str) -> None:
    assert sluice.get(answers_inside.remote(backend), timeout=2 * DEADLINE_S) is False


def test_available_resources_drop_while_a_task_runs_and_come_back(tmp_path: Path) -> None:
    def free_cpus() -> float:
        return sluice.available_resources()["CPU"]

    assert poll_until(lambda: free_cpus() == 3)
    started, release = tmp_path / "started", tmp_path / "release"
    ref = wait_for_file.remote(str(started), str(release))
    assert poll_until(lambda: started.exists() and free_cpus() == 2)
    release.write_text("go")
    assert sluice.get(ref, timeout=DEADLINE_S) == "released"
    assert poll_until(lambda: free_cpus() == 3)


@sluice.remote
def run_inside(test) -> str:
    test()
    return test.__name__


NESTED = [test_remote_function_with_positional_and_keyword_arguments,
          test_num_returns_two_gives_two_refs, test_chained_tasks_pass_results_without_the_driver,
          test_put_and_get_of_a_small_value,
          test_an_actor_keeps_its_state_and_runs_calls_in_submission_order,
          test_get_actor_finds_a_named_actor_and_shares_its_state]


@pytest.mark.parametrize("test", NESTED, ids=lambda t: t.__name__[len("test_"):])
def test_api_tests_pass_inside_a_task(test) -> None:
    """The in-worker backend runs the same API tests (its calls go through the driver)."""
    assert sluice.get(run_inside.remote(test), timeout=2 * DEADLINE_S) == test.__name__


# -- last: a failure here could take the driver's connection down with it -----------------------

def test_a_dag_with_an_actor_keeps_the_actors_state_across_executes() -> None:
    plan = dag_example.make_dag().compile()
    expected = dag_example_expected(10)
    assert expected == -49
    assert sluice.get(plan.execute(10), timeout=60) == [expected, expected]
    assert sluice.get(plan.execute(10), timeout=60) == [expected, 2 * expected]
    assert sluice.get(plan.execute(7), timeout=60) == [dag_example_expected(7),
                                                      2 * expected + dag_example_expected(7)]
