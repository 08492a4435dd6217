"""The eager API on a running runtime: remote functions and classes, options, get/put/wait/cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import ActorDiedError, GetTimeoutError, TaskCancelledError, TaskError
from tests.executor.helpers import wait_until


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
def add(a, b=0):
    return a + b


@sluice.remote
def sleep_then(seconds: float, value=None):
    time.sleep(seconds)
    return value


@sluice.remote
def held_until(gate: str, value=None):
    """``value`` once the file ``gate`` exists: the test holds the task until it opens the gate."""
    if not wait_until(Path(gate).exists, timeout=60):
        raise TimeoutError(f"the gate {gate} stayed shut for 60 s")
    return value


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The file ``held_until`` waits for; opened when the test ends at the latest."""
    path = tmp_path / "gate"
    yield path
    path.touch()


@sluice.remote
def interval(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@sluice.remote
def touch_after(_gate, path: str) -> str:
    Path(path).write_text("ran")
    return path


@sluice.remote
def describe(x, items, *, key=None):
    """Report how the arguments arrived: values or refs."""
    inner = items[0]
    return {
        "x": x,
        "key": key,
        "inner_type": type(inner).__name__,
        "inner_value": sluice.get(inner) if isinstance(inner, sluice.ObjectRef) else None,
    }


@sluice.remote(num_returns=2)
def divmod_task(a: int, b: int):
    return a // b, a % b


@sluice.remote
def fail(message: str):
    raise ValueError(message)


@sluice.remote
class Counter:
    def __init__(self, start: int = 0):
        self.n = start

    def add(self, x: int) -> int:
        self.n += x
        return self.n

    def value(self) -> int:
        return self.n

    def slow_value(self, seconds: float) -> int:
        time.sleep(seconds)
        return self.n


@sluice.remote(max_concurrency=2, max_restarts=0)
class Rendezvous:
    """Two calls can meet only if the actor runs them at the same time."""

    def __init__(self):
        import threading

        self.barrier = threading.Barrier(2, timeout=30)

    def meet(self) -> int:
        return self.barrier.wait()


@sluice.remote
def pair():
    return ("left", "right")


# -- remote functions and classes ------------------------------------------------------

def test_remote_function_returns_a_ref_whose_value_get_returns() -> None:
    ref = add.remote(2, 3)
    assert isinstance(ref, sluice.ObjectRef)
    assert sluice.get(ref) == 5
    assert sluice.get(add.remote(2, b=40)) == 42


def test_remote_with_options_in_the_decorator_applies_them() -> None:
    q, r = divmod_task.remote(17, 5)  # num_returns=2 given to the decorator
    assert sluice.get([q, r]) == [3, 2]


def test_remote_class_with_and_without_options() -> None:
    c = Counter.remote(10)
    assert isinstance(c, sluice.ActorHandle)
    assert sluice.get([c.add.remote(1), c.add.remote(2)]) == [11, 13]
    r = Rendezvous.remote()  # max_concurrency=2 given to the decorator
    assert sorted(sluice.get([r.meet.remote(), r.meet.remote()], timeout=60)) == [0, 1]
    sluice.kill(c)
    sluice.kill(r)


def test_options_returns_a_copy_and_leaves_the_original_alone() -> None:
    split = pair.options(num_returns=2)
    left, right = split.remote()
    assert sluice.get([left, right]) == ["left", "right"]
    whole = pair.remote()
    assert isinstance(whole, sluice.ObjectRef)
    assert sluice.get(whole) == ("left", "right")
    assert sluice.get(add.options(num_cpus=1, max_retries=0).remote(4, 4)) == 8


def test_num_returns_must_match_what_the_task_returns() -> None:
    with pytest.raises(TaskError, match=r"num_returns=3 but returned tuple"):
        sluice.get(pair.options(num_returns=3).remote()[0])


def test_options_name_labels_the_task_in_its_errors() -> None:
    with pytest.raises(ValueError, match=r"task renamed_for_errors failed"):
        sluice.get(fail.options(name="renamed_for_errors").remote("boom"))


def test_options_num_cpus_two_takes_both_cpus_so_such_tasks_never_overlap() -> None:
    wide = interval.options(num_cpus=2)
    spans = sorted(sluice.get([wide.remote(0.2), wide.remote(0.2)], timeout=30))
    assert spans[0][1] <= spans[1][0], f"num_cpus=2 tasks overlapped on a 2-CPU runtime: {spans}"


def test_unknown_option_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) num_cpu\b"):
        add.options(num_cpu=1)
    with pytest.raises(ValueError, match="unknown option.*max_retries"):
        Counter.options(max_retries=2)  # a task option, not an actor one
    with pytest.raises(ValueError, match="unknown option.*colour"):
        sluice.remote(colour="red")(lambda: None)


# -- get and put -----------------------------------------------------------------------

def test_get_takes_one_ref_or_a_list_and_keeps_the_order() -> None:
    refs = [add.remote(i, i) for i in range(20)]
    assert sluice.get(refs) == [2 * i for i in range(20)]
    assert sluice.get(tuple(refs[:3])) == [0, 2, 4]
    assert sluice.get([]) == []


def test_get_timeout_raises_get_timeout_error_and_a_later_get_succeeds(gate: Path) -> None:
    ref = held_until.remote(str(gate), "late")
    with pytest.raises(GetTimeoutError, match="timed out"):
        sluice.get(ref, timeout=0.1)  # the gate is shut: only the timeout can end this get
    gate.touch()
    assert sluice.get(ref, timeout=60) == "late"


def test_put_then_get_round_trips_a_value() -> None:
    value = {"a": [1, 2, 3], "b": ("x", None)}
    ref = sluice.put(value)
    assert isinstance(ref, sluice.ObjectRef)
    assert sluice.get(ref) == value
    assert sluice.get(add.remote(sluice.put(40), 2)) == 42


def test_put_of_a_ref_is_refused() -> None:
    with pytest.raises(TypeError, match="put"):
        sluice.put(sluice.put(1))


# -- argument passing ------------------------------------------------------------------

def test_top_level_refs_arrive_as_values_and_nested_refs_arrive_as_refs() -> None:
    x, inner, key = sluice.put(3), sluice.put("inside"), sluice.put("kw")
    got = sluice.get(describe.remote(x, [inner], key=key))
    assert got == {"x": 3, "key": "kw", "inner_type": "ObjectRef", "inner_value": "inside"}


def test_a_task_result_ref_passed_on_is_resolved_before_the_next_task_runs() -> None:
    first = sleep_then.remote(0.1, 20)
    assert sluice.get(add.remote(first, add.remote(first, 1))) == 41


# -- wait ------------------------------------------------------------------------------

def test_wait_returns_ready_and_pending_in_input_order(gate: Path) -> None:
    slow = held_until.remote(str(gate), "slow")  # pending until the gate opens
    later = add.remote("lat", "er")
    sooner = sluice.put("sooner")  # ready first, listed last
    ready, pending = sluice.wait([slow, later, sooner], num_returns=2, timeout=60)
    assert ready == [later, sooner]
    assert pending == [slow]
    ready, pending = sluice.wait([sooner, slow, later], num_returns=1, timeout=60)
    assert (ready, pending) == ([sooner], [slow, later])
    gate.touch()
    assert sluice.get(slow, timeout=60) == "slow"


def test_wait_timeout_returns_what_is_ready_so_far(gate: Path) -> None:
    slow = held_until.remote(str(gate))
    done = sluice.put(1)
    # The gate is shut: only the timeout can end this wait (else it lasts until slow fails).
    ready, pending = sluice.wait([slow, done], num_returns=2, timeout=0.1)
    assert (ready, pending) == ([done], [slow])
    gate.touch()
    ready, pending = sluice.wait([slow, done], num_returns=2, timeout=60)
    assert (ready, pending) == ([slow, done], [])


def test_wait_rejects_bad_arguments() -> None:
    ref = sluice.put(1)
    with pytest.raises(TypeError, match="list of ObjectRefs"):
        sluice.wait(ref)
    with pytest.raises(ValueError, match="num_returns=2"):
        sluice.wait([ref], num_returns=2)
    with pytest.raises(ValueError, match="same ObjectRef twice"):
        sluice.wait([ref, ref])


def test_wait_takes_fetch_local_as_ray_does() -> None:
    refs = [sluice.put(1), add.remote(1, 2)]
    for fetch_local in (True, False):
        ready, pending = sluice.wait(refs, num_returns=2, timeout=60, fetch_local=fetch_local)
        assert (ready, pending) == (refs, [])
    with pytest.raises(TypeError, match="fetch_local='yes'"):
        sluice.wait(refs, fetch_local="yes")


# -- cancel, kill, named actors --------------------------------------------------------

def test_cancel_of_a_task_waiting_for_its_input_raises_task_cancelled_error(
        tmp_path: Path, gate: Path) -> None:
    upstream = held_until.remote(str(gate))  # the input stays pending until the gate opens
    marker = tmp_path / "ran"
    waiting = touch_after.remote(upstream, str(marker))
    sluice.cancel(waiting)
    with pytest.raises(TaskCancelledError, match="touch_after was cancelled"):
        sluice.get(waiting, timeout=60)
    gate.touch()
    sluice.get(upstream, timeout=60)
    assert sluice.get(add.remote(1, 1), timeout=30) == 2  # the scheduler moved on past it
    assert not marker.exists(), "a cancelled task ran once its input was ready"


def test_a_cancelled_task_queued_behind_its_inputs_producer_never_runs(
        tmp_path: Path, gate: Path) -> None:
    # x -> upstream -> waiting queue on one worker, each behind the task making its input;
    # the worker reads the cancel before it runs upstream, so it reports the cancelled task
    # before upstream's result. Upstream's result must not make the cancelled task ready.
    marker = tmp_path / "ran"
    upstream = add.remote(held_until.remote(str(gate), 1), 1)
    waiting = touch_after.remote(upstream, str(marker))
    sluice.cancel(waiting)
    with pytest.raises(TaskCancelledError, match="touch_after was cancelled"):
        sluice.get(waiting, timeout=60)
    gate.touch()
    assert sluice.get(upstream, timeout=60) == 2
    assert sluice.get(add.remote(1, 1), timeout=60) == 2
    assert not marker.exists(), "a cancelled task ran once its input was ready"


def test_kill_makes_later_calls_raise_actor_died_error() -> None:
    c = Counter.remote()
    assert sluice.get(c.add.remote(1)) == 1
    running = c.slow_value.remote(30.0)  # killed long before it could return
    sluice.kill(c)
    with pytest.raises(ActorDiedError, match="killed"):
        sluice.get(running, timeout=60)
    with pytest.raises(ActorDiedError, match="killed"):
        sluice.get(c.add.remote(1), timeout=60)
    with pytest.raises(TypeError, match="actor handle"):
        sluice.kill(sluice.put(1))


def test_get_actor_finds_a_named_actor_and_shares_its_state() -> None:
    c = Counter.options(name="api-counter").remote()
    sluice.get(c.add.remote(5))
    same = sluice.get_actor("api-counter")
    assert same == c
    assert sluice.get(same.add.remote(1)) == 6
    with pytest.raises(ValueError, match="no actor named 'nobody-home'"):
        sluice.get_actor("nobody-home")
    sluice.kill(c)


# -- arguments that do not fit are refused at .remote(), in the caller --------------------

def remote_message(call: str, signature: str, why: str) -> str:
    return rf"^{call}: the arguments do not fit {signature}: {why} \(the call passed .*\); fix the call$"


@pytest.mark.parametrize(("args", "kwargs", "why"), [
    ((1, 2, 3), {}, "too many positional arguments"),
    ((), {}, "missing a required argument: 'a'"),
    ((1,), {"c": 2}, "got an unexpected keyword argument 'c'"),
])
def test_a_task_given_arguments_that_do_not_fit_fails_at_remote(args: tuple, kwargs: dict,
                                                                why: str) -> None:
    with pytest.raises(TypeError, match=remote_message(r"add\.remote\(\)", r"add\(a, b=0\)", why)):
        add.remote(*args, **kwargs)  # raised here, not by a worker at get
    with pytest.raises(TypeError, match=remote_message(r"add\.remote\(\)", r"add\(a, b=0\)", why)):
        add.options(num_cpus=0).remote(*args, **kwargs)
    assert sluice.get(add.remote(1, b=2), timeout=30) == 3


def test_an_actor_given_arguments_that_do_not_fit_fails_at_remote() -> None:
    with pytest.raises(TypeError, match=remote_message(r"Counter\.remote\(\)", r"Counter\(start=0\)",
                                                       "too many positional arguments")):
        Counter.remote(1, 2)
    with pytest.raises(TypeError, match=remote_message(r"Counter\.remote\(\)", r"Counter\(start=0\)",
                                                       "got an unexpected keyword argument 'begin'")):
        Counter.options(name="never-started").remote(begin=1)
    with pytest.raises(ValueError, match="no actor named 'never-started'"):
        sluice.get_actor("never-started")


@pytest.mark.parametrize(("args", "kwargs", "why"), [
    ((), {}, "missing a required argument: 'x'"),
    ((1, 2), {}, "too many positional arguments"),
    ((1,), {"y": 1}, "got an unexpected keyword argument 'y'"),
])
def test_an_actor_method_given_arguments_that_do_not_fit_fails_at_remote(args: tuple, kwargs: dict,
                                                                         why: str) -> None:
    c = Counter.options(name="arity-counter").remote()
    try:
        for handle in (c, sluice.get_actor("arity-counter")):  # a looked-up handle checks too
            with pytest.raises(TypeError, match=remote_message(r"Counter\.add\.remote\(\)",
                                                               r"Counter\.add\(x\)", why)):
                handle.add.remote(*args, **kwargs)
            with pytest.raises(TypeError, match=remote_message(r"Counter\.add\.remote\(\)",
                                                               r"Counter\.add\(x\)", why)):
                handle.add.options(num_returns=1).remote(*args, **kwargs)
        assert sluice.get(c.add.remote(2), timeout=30) == 2  # nothing bad reached the actor
    finally:
        sluice.kill(c)


@sluice.remote
def misuse_inside(counter) -> list[str]:
    """Bad calls made inside a task, on a remote function and on a handle it was given."""
    errors = []
    for bad in (lambda: add.remote(1, 2, 3), lambda: counter.add.remote(1, 2)):
        try:
            bad()
        except TypeError as err:
            errors.append(str(err))
    return errors


def test_a_task_checks_the_calls_it_makes_too() -> None:
    # The arity travels with a pickled remote function and actor handle.
    c = Counter.remote()
    errors = sluice.get(misuse_inside.remote(c), timeout=60)
    assert [e.split(":")[0] for e in errors] == ["add.remote()", "Counter.add.remote()"]
    assert all("too many positional arguments" in e for e in errors)


# -- get, wait and get_actor name a bad argument ----------------------------------------

@pytest.mark.parametrize(("timeout", "error"), [
    (float("nan"), ValueError), (-1, ValueError), (-0.5, ValueError), (float("-inf"), ValueError),
    ("1", TypeError), (True, TypeError),
])
def test_get_and_wait_refuse_a_timeout_that_is_not_seconds(timeout, error: type) -> None:
    ref = sluice.put(1)
    with pytest.raises(error, match=rf"^get\(timeout={timeout!r}\): give seconds .*>= 0 \(0 takes "
                                    r"only what is ready now\), or None to wait as long as it takes$"):
        sluice.get(ref, timeout=timeout)
    with pytest.raises(error, match=rf"^wait\(timeout={timeout!r}\): give seconds"):
        sluice.wait([ref], timeout=timeout)


def test_get_with_zero_or_infinite_timeout() -> None:
    ref = sluice.put(5)
    assert sluice.get(ref, timeout=0) == 5  # ready: no wait needed
    assert sluice.get(ref, timeout=float("inf")) == 5  # as None
    assert sluice.wait([ref], timeout=float("inf")) == ([ref], [])


def test_wait_refuses_a_num_returns_that_is_not_an_int() -> None:
    ref = sluice.put(1)
    with pytest.raises(ValueError, match=r"^wait\(num_returns=0\.5\) with 1 refs; num_returns must be "
                                         r"an int between 0 and 1$"):
        sluice.wait([ref], num_returns=0.5)


@pytest.mark.parametrize(("name", "error", "shown"), [
    (None, TypeError, "None"), (5, TypeError, "5"), (b"c", TypeError, "b'c'"), ("", ValueError, "''"),
])
def test_get_actor_of_something_that_is_not_a_name_says_what_to_pass(name, error: type,
                                                                     shown: str) -> None:
    with pytest.raises(error, match=rf"^get_actor\({shown}\): give the actor's name, the "
                                    r"(non-empty )?str it was started with as "
                                    r"Cls\.options\(name=\.\.\.\)\.remote\(\)$"):
        sluice.get_actor(name)


def test_an_actor_name_must_be_a_non_empty_str() -> None:
    for name in (5, ""):
        with pytest.raises(ValueError, match=rf"name={name!r} must be a non-empty str \(or None\)"):
            Counter.options(name=name)
