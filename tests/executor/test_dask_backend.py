"""The dask backend: sluice tasks, actors and Plans on a real dask.distributed cluster.

One LocalCluster (two worker processes, one thread and ``CPU: 1`` each) serves
the module; each test starts and stops its own sluice runtime on it. A test that can
break the cluster (a forced cancel restarts a worker) asks for ``own_cluster`` instead.
"""

from __future__ import annotations

import operator
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    InfeasibleResourceError,
    TaskCancelledError,
    TaskError,
    UnsupportedOnBackendError,
    WorkerCrashedError,
)
from tests.compiler import dag_example

distributed = pytest.importorskip("distributed")  # the [dask] extra

EVENT_TIMEOUT_S = 30


def two_workers() -> distributed.LocalCluster:
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    resources={"CPU": 1}, dashboard_address=":0")


@pytest.fixture(scope="module")
def shared_cluster():
    with two_workers() as c:
        yield c


@pytest.fixture(scope="module")
def shared_observer(shared_cluster):
    with distributed.Client(shared_cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def own_cluster():
    """Ask for this in a test that can break its cluster (a forced cancel restarts a worker,
    synchronously): it gets a cluster of its own, so the damage never reaches the next test."""
    with two_workers() as c:
        yield c


def owns_a_cluster(request: pytest.FixtureRequest) -> bool:
    return "own_cluster" in request.fixturenames


@pytest.fixture
def cluster(request):
    """The test's Dask cluster: its own if it asks for ``own_cluster``, else the module's."""
    return request.getfixturevalue("own_cluster" if owns_a_cluster(request) else "shared_cluster")


@pytest.fixture
def observer(request, cluster):
    """A Dask client of the test's own, to look at the cluster from outside sluice."""
    if not owns_a_cluster(request):
        yield request.getfixturevalue("shared_observer")
        return
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def dask_runtime(cluster, observer):
    sluice.init(backend="dask", address=cluster.scheduler_address)
    yield cluster
    sluice.shutdown()
    assert not _sluice_datasets(observer), "shutdown must unpublish every actor it published"


def _sluice_datasets(client):
    return [name for name in client.list_datasets() if str(name).startswith("sluice-")]


@pytest.fixture
def gate(dask_runtime, observer):
    """A ``distributed.Event`` that tasks block on until the test sets it."""
    event = distributed.Event(f"sluice-test-{uuid.uuid4().hex}", client=observer)
    yield event
    event.set()  # never leave a worker blocked for the next test


@sluice.remote
def square(x):
    return x * x


@sluice.remote
def where():
    return distributed.get_worker().address


@sluice.remote
def total(refs):
    return sum(sluice.get(refs))


@sluice.remote(num_returns=2)
def split(x):
    return x, x + 1


@sluice.remote
def fail(x):
    raise ValueError(f"bad input {x}")


@sluice.remote
def array_sum(a):
    return float(a.sum())


@sluice.remote
def fan_out(n):
    return sum(sluice.get([square.remote(i) for i in range(n)]))


@sluice.remote
def after(event_name, value):
    """``value`` once the test sets the event (a stand-in for slow work)."""
    assert distributed.Event(event_name).wait(EVENT_TIMEOUT_S)
    return value


@sluice.remote
def started_then_after(started_name, event_name, value):
    """Say it started, then wait for the test like ``after``."""
    distributed.Event(started_name).set()
    assert distributed.Event(event_name).wait(EVENT_TIMEOUT_S)
    return value


@sluice.remote
def crash_on_first_attempt(marker: str) -> int:
    """Kills its own worker on the first attempt (counted in the file ``marker``)."""
    path = Path(marker)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    if attempt == 1:
        os._exit(1)
    return attempt


@sluice.remote
def put_inside():
    return sluice.put("made in a task")


@sluice.remote
class Log:
    def __init__(self, first=None):
        self.items = [] if first is None else [first]

    def add(self, x):
        self.items.append(x)
        return list(self.items)


@sluice.remote
class Fragile:
    def __init__(self):
        self.ratio = 1 / 0

    def ping(self):
        return "pong"


@sluice.remote
def bump(counter, by):
    return sluice.get(counter.add.remote(by))


@sluice.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, x):
        self.n += x
        return self.n


def test_remote_functions_run_on_the_dask_workers(dask_runtime, observer):
    assert sluice.get([square.remote(i) for i in range(6)]) == [0, 1, 4, 9, 16, 25]
    assert sluice.get(square.remote(square.remote(2))) == 16  # a top-level ref arrives as its value
    addresses = set(sluice.get([where.remote() for _ in range(8)]))
    assert addresses and addresses <= set(observer.scheduler_info()["workers"])


@pytest.fixture
def amm_paused(observer):
    """Dask's active memory manager paused for the test: every 2 s it drops the replicas of
    a key no task waits for, so what a test sees of a broadcast would depend on timing."""
    running = observer.amm.running()
    observer.amm.stop()
    yield
    if running:
        observer.amm.start()


def test_a_large_function_is_put_on_every_worker_once(dask_runtime, observer, amm_paused):
    table = np.arange(50_000)  # captured by value: the pickled function is about 400 KB

    @sluice.remote
    def lookup(i):
        return int(table[i])

    assert sluice.get([lookup.remote(i) for i in (0, 7, 49_999)]) == [0, 7, 49_999]
    [holders] = [w for k, w in observer.who_has().items() if str(k).startswith("sluice-fn-")]
    assert len(holders) == 2  # broadcast: no worker draws every task to itself


def test_refs_nested_in_a_list_reach_the_task_as_refs(dask_runtime):
    refs = [square.remote(i) for i in range(4)]
    assert sluice.get(total.remote(refs)) == 0 + 1 + 4 + 9
    assert sluice.get(total.remote({"a": refs[:2]}["a"])) == 1


def test_tasks_submit_and_get_tasks_from_inside(dask_runtime):
    # Four parents on two one-thread workers, each waiting on five children: the
    # parents leave the thread pool while they wait, so this cannot deadlock.
    assert sluice.get([fan_out.remote(5) for _ in range(4)]) == [30] * 4


def test_num_returns_two_gives_two_refs(dask_runtime):
    a, b = split.remote(3)
    assert sluice.get([a, b]) == [3, 4]
    assert sluice.get(square.remote(b)) == 16


def test_a_task_exception_reraises_as_task_error_and_its_own_type(dask_runtime):
    with pytest.raises(ValueError, match="bad input 1") as info:
        sluice.get(fail.remote(1))
    assert isinstance(info.value, TaskError)
    assert "in fail" in str(info.value)  # the remote traceback names the user's function
    with pytest.raises(ValueError, match="bad input 2"):  # a dependent fails with the same error
        sluice.get(square.remote(fail.remote(2)))


def test_wait_and_get_honour_timeouts(gate):
    slow, fast = after.remote(gate.name, "slow"), square.remote(3)
    ready, pending = sluice.wait([slow, fast], num_returns=1, timeout=EVENT_TIMEOUT_S)
    assert (ready, pending) == ([fast], [slow])
    # The gate is shut: only the timeout can end this wait (else it lasts until ``after`` fails).
    ready, pending = sluice.wait([slow, fast], num_returns=2, timeout=0.3)
    assert ready == [fast] and pending == [slow]
    with pytest.raises(GetTimeoutError, match="1 of 1 objects not ready"):
        sluice.get(slow, timeout=0.2)
    assert sluice.available_resources()["CPU"] == 1.0  # the blocked task holds one worker's CPU
    gate.set()
    assert sluice.wait([slow, fast], num_returns=2)[0] == [slow, fast]
    assert sluice.get(slow) == "slow"


def test_put_once_and_pass_the_ref_to_many_tasks(dask_runtime):
    data = np.arange(1_000_000, dtype=np.float64)
    ref = sluice.put(data)
    assert sluice.get([array_sum.remote(ref) for _ in range(6)]) == [float(data.sum())] * 6
    np.testing.assert_array_equal(sluice.get(ref), data)
    with pytest.raises(TypeError, match="put\\(\\) of an ObjectRef"):
        sluice.put(ref)


def test_dropping_the_last_ref_frees_the_data_on_the_cluster(dask_runtime, observer):
    client = observer
    before = set(client.who_has())
    ref = sluice.put(np.ones(10_000))
    [key] = set(client.who_has()) - before
    assert sluice.get(array_sum.remote(ref)) == 10_000.0
    del ref  # the next call applies the drop; Dask then forgets the key
    sluice.get(square.remote(2))
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while key in client.who_has() and time.monotonic() < deadline:
        pass  # each who_has is a round trip to the scheduler
    assert key not in client.who_has()


def test_cancel_a_queued_task(gate):
    blocked = square.remote(after.remote(gate.name, 2))  # cannot start before the gate opens
    sluice.cancel(blocked)
    with pytest.raises(TaskCancelledError, match="task square was cancelled"):
        sluice.get(blocked, timeout=EVENT_TIMEOUT_S)


def test_force_cancel_of_a_queued_task_cancels_it(gate):
    blocked = square.remote(after.remote(gate.name, 2))  # waits for its argument: not running
    sluice.cancel(blocked, force=True)
    with pytest.raises(TaskCancelledError, match="task square was cancelled"):
        sluice.get(blocked, timeout=EVENT_TIMEOUT_S)


def test_force_cancel_of_a_running_task_is_unsupported_and_cancels_nothing(gate, observer):
    started = distributed.Event(f"{gate.name}-started", client=observer)
    running = started_then_after.remote(started.name, gate.name, 7)
    assert started.wait(EVENT_TIMEOUT_S)
    with pytest.raises(UnsupportedOnBackendError,
                       match=r"cancel\(force=True\) of the running task started_then_after on the dask "
                             r"backend: Dask can stop a running task only by restarting its worker.*; "
                             r"call sluice\.cancel\(ref\) to abandon it") as info:
        sluice.cancel(running, force=True)
    assert isinstance(info.value, NotImplementedError)
    gate.set()
    assert sluice.get(running, timeout=EVENT_TIMEOUT_S) == 7  # it was left alone


def test_cancel_of_a_running_task_abandons_it(gate, observer):
    started = distributed.Event(f"{gate.name}-started", client=observer)
    running = started_then_after.remote(started.name, gate.name, 7)
    assert started.wait(EVENT_TIMEOUT_S)
    sluice.cancel(running)
    with pytest.raises(TaskCancelledError, match="task started_then_after was cancelled"):
        sluice.get(running, timeout=EVENT_TIMEOUT_S)


def test_an_actor_with_max_restarts_is_unsupported(dask_runtime):
    for given, shown in ((1, "1"), (-1, r"-1 \(no limit\)")):
        with pytest.raises(UnsupportedOnBackendError,
                           match=rf"actor Counter: max_restarts={shown} on the dask backend: Dask actors "
                                 r"never restart .*; drop max_restarts, or use the local or cluster "
                                 r"backend"):
            Counter.options(max_restarts=given).remote()
    assert sluice.get(Counter.options(max_restarts=0).remote().add.remote(2)) == 2


def test_max_calls_and_exit_actor_are_unsupported(dask_runtime):
    @sluice.remote(max_calls=2)
    def once():
        return 1

    with pytest.raises(UnsupportedOnBackendError, match=r"task .*once: max_calls=2 on the dask "
                                                        r"backend: a Dask worker runs every task"):
        once.remote()

    @sluice.remote
    class Quits:
        def stop(self):
            sluice.actor.exit_actor()

    with pytest.raises(UnsupportedOnBackendError, match=r"exit_actor\(\) on the dask backend"):
        sluice.get(Quits.remote().stop.remote())


def test_max_retries_above_the_schedulers_allowed_failures_is_unsupported(dask_runtime):
    for given, shown in ((4, "4"), (-1, r"-1 \(no limit\)")):
        with pytest.raises(UnsupportedOnBackendError,
                           match=rf"task square: max_retries={shown} on the dask backend: Dask reruns a "
                                 r"task whose worker died up to distributed\.scheduler\.allowed-"
                                 r"failures=3 times, the same for every task; use max_retries<=3"):
            square.options(max_retries=given).remote(2)
    assert sluice.get(square.options(max_retries=3).remote(2)) == 4


def test_max_retries_zero_fails_a_task_whose_worker_died_as_locally(dask_runtime, tmp_path):
    marker = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError, match=r"the Dask worker running crash_on_first_attempt died "
                                                 r"1 time\(s\) and its retries are spent "
                                                 r"\(max_retries=0\)"):
        sluice.get(crash_on_first_attempt.options(max_retries=0).remote(str(marker)),
                   timeout=EVENT_TIMEOUT_S)
    assert marker.read_text() == "1"  # the rerun Dask made stopped before calling the function
    marker.unlink()
    ref = crash_on_first_attempt.options(max_retries=1).remote(str(marker))
    assert sluice.get(ref, timeout=EVENT_TIMEOUT_S) == 2


def test_refs_leaving_their_task_are_unsupported(dask_runtime):
    inner = sluice.get(put_inside.remote())
    with pytest.raises(UnsupportedOnBackendError, match=r"was made inside a task, and on the dask "
                                                        r"backend such a ref cannot leave its task"):
        sluice.get(inner)
    with pytest.raises(UnsupportedOnBackendError, match=r"a task reads only the refs in its own "
                                                        r"arguments, not refs kept inside put values"):
        sluice.get(total.remote(sluice.put([sluice.put(1)])), timeout=EVENT_TIMEOUT_S)


def test_actor_keeps_state_and_runs_calls_in_order(dask_runtime):
    counter = Counter.remote()
    assert sluice.get([counter.add.remote(i) for i in range(20)]) == [sum(range(i + 1)) for i in range(20)]


def test_actor_call_waits_for_its_arguments_and_keeps_order(gate):
    log = Log.remote("start")
    first = log.add.remote(after.remote(gate.name, "a"))
    second = log.add.remote("b")  # submitted later: must run after ``first``
    ready, _ = sluice.wait([second], timeout=0.5)
    assert ready == []
    gate.set()
    assert sluice.get([first, second]) == [["start", "a"], ["start", "a", "b"]]


def test_a_failed_argument_fails_only_its_own_actor_call(dask_runtime):
    log = Log.remote()
    broken = log.add.remote(fail.remote(7))
    after_it = log.add.remote("still works")
    with pytest.raises(ValueError, match="bad input 7"):
        sluice.get(broken)
    assert sluice.get(after_it, timeout=EVENT_TIMEOUT_S) == ["still works"]


def test_an_actor_without_handles_is_released(dask_runtime, observer):
    counter = Counter.remote()
    assert sluice.get(counter.add.remote(1)) == 1
    assert len(_sluice_datasets(observer)) == 1
    actor_keys = {k for k in observer.who_has() if str(k).startswith("Counter-")}
    del counter
    sluice.get(square.remote(1))  # the next call applies the drop
    assert _sluice_datasets(observer) == []
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while actor_keys & set(observer.who_has()) and time.monotonic() < deadline:
        pass  # each who_has is a round trip to the scheduler
    assert not actor_keys & set(observer.who_has())


def test_get_if_exists_works_and_a_namespace_is_refused(dask_runtime):
    first = Counter.options(name="once").remote()
    sluice.get(first.add.remote(2))
    again = Counter.options(name="once", get_if_exists=True).remote()
    assert sluice.get(again.add.remote(1)) == 3
    with pytest.raises(UnsupportedOnBackendError, match="namespace 'team' on the dask backend"):
        Counter.options(name="other", namespace="team").remote()
    with pytest.raises(UnsupportedOnBackendError, match="Dask keeps no namespaces"):
        sluice.get_actor("once", namespace="team")
    sluice.kill(first)


def test_named_actor_via_get_actor_and_kill(dask_runtime):
    tally = Counter.options(name="tally").remote()
    sluice.get(tally.add.remote(5))
    same = sluice.get_actor("tally")
    assert sluice.get(same.add.remote(1)) == 6
    with pytest.raises(ValueError, match="an actor named 'tally' already exists"):
        Counter.options(name="tally").remote()
    with pytest.raises(ValueError, match="no actor named 'nobody' is alive"):
        sluice.get_actor("nobody")
    sluice.kill(same)
    with pytest.raises(ActorDiedError, match="killed by sluice.kill"):
        sluice.get(tally.add.remote(1), timeout=EVENT_TIMEOUT_S)
    with pytest.raises(ValueError, match="no actor named 'tally' is alive"):
        sluice.get_actor("tally")


def test_a_failed_constructor_fails_every_call(dask_runtime):
    broken = Fragile.remote()
    for _ in range(2):
        with pytest.raises(ZeroDivisionError) as info:
            sluice.get(broken.ping.remote(), timeout=EVENT_TIMEOUT_S)
        assert isinstance(info.value, ActorDiedError) and "Fragile.__init__" in str(info.value)
    log = Log.remote(first=fail.remote(0))  # its argument failed: every call gets that error
    with pytest.raises(ValueError, match="bad input 0"):
        sluice.get(log.add.remote(1), timeout=EVENT_TIMEOUT_S)


# The worker's client re-announces the keys it holds; Dask warns about already forgotten ones.
@pytest.mark.filterwarnings("ignore:Client .* desires key .* but key is unknown:UserWarning")
def test_tasks_call_an_actor_through_a_handle(dask_runtime):
    counter = Counter.remote()
    assert sluice.get(counter.add.remote(1)) == 1
    assert sluice.get(bump.remote(counter, 10)) == 11  # the handle travels into the task
    assert sluice.get(counter.add.remote(100)) == 111


def test_a_compiled_plan_gives_the_local_backends_result(cluster):
    dag = dag_example.make_dag()
    sluice.init(num_cpus=1)
    try:
        local = [sluice.get(dag.execute(n)) for n in (4, 6)]
    finally:
        sluice.shutdown()
    sluice.init(backend="dask", address=cluster.scheduler_address)
    try:
        on_dask = [sluice.get(dag.execute(n)) for n in (4, 6)]
    finally:
        sluice.shutdown()
    # load -> evens/odds (a diamond) -> combine -> scale -> shift; the Tally actor keeps a total.
    assert local == [[-19, -19], [-29, -48]]
    assert on_dask == local


def test_an_unmeetable_resource_demand_fails_at_once(dask_runtime):
    gpu = square.options(num_gpus=1)
    with pytest.raises(InfeasibleResourceError,
                       match="num_gpus=1 requested but the Dask workers have at most 0 GPU"):
        gpu.remote(2)
    with pytest.raises(InfeasibleResourceError, match="num_cpus=2 requested"):
        square.options(num_cpus=2).remote(2)
    with pytest.raises(InfeasibleResourceError, match=r"resources=\{'TPU': 1\} requested"):
        square.options(resources={"TPU": 1}).remote(2)
    assert sluice.cluster_resources() == {"CPU": 2.0, "GPU": 0.0}


def test_memory_is_a_hint_where_dask_workers_declare_none(dask_runtime):
    assert sluice.get(square.options(memory=1 << 40).remote(3)) == 9


def test_a_passed_in_client_stays_usable_after_shutdown():
    # Workers without declared resources: num_cpus is ignored, a GPU demand still fails.
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        sluice.init(backend="dask", address=client)
        try:
            assert sluice.get(square.options(num_cpus=8).remote(7)) == 49
            with pytest.raises(InfeasibleResourceError, match="no Dask worker declares any resources"):
                square.options(num_gpus=1).remote(1)
        finally:
            sluice.shutdown()
        assert client.status == "running"
        assert client.submit(operator.add, 1, 2).result() == 3
        assert not [k for k in client.refcount if str(k).startswith(("square", "sluice"))]


@sluice.remote
def _stream(n):
    yield from range(n)


def test_a_streaming_generator_is_refused_clearly(dask_runtime):
    with pytest.raises(NotImplementedError, match="not on the Dask backend"):
        _stream.remote(3)
    assert sluice.get(_stream.options(num_returns=3).remote(3)) == [0, 1, 2]
