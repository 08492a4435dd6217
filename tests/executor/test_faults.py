"""Faults and bad input: crashed workers, retries, timeouts, cancellation, infeasible demands."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import (
    GetTimeoutError,
    InfeasibleResourceError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)
from tests.executor.helpers import attempts, bump, wait_until


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2, num_gpus=0)
    yield
    sluice.shutdown()


@sluice.remote
def crash_on_first_attempt(marker: str) -> int:
    if bump(marker) == 1:
        Path(marker + ".pid").write_text(str(os.getpid()))
        os._exit(1)
    return os.getpid()


@sluice.remote
def always_crash(marker: str) -> None:
    bump(marker)
    os._exit(1)


@sluice.remote(retry_exceptions=True, max_retries=3)
def flaky(marker: str) -> int:
    n = bump(marker)
    if n < 3:
        raise ValueError(f"attempt {n} failed")
    return n


@sluice.remote(retry_exceptions=[ValueError], max_retries=3)
def wrong_type(marker: str) -> None:
    bump(marker)
    raise TypeError("not worth a retry")


@sluice.remote
def raise_once(marker: str) -> None:
    bump(marker)
    raise ValueError("no retry by default")


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
def touch(path: str) -> None:
    Path(path).write_text("ran")


@sluice.remote
def parse_config(text: str) -> dict:
    return {"port": int(text)}


@sluice.remote
def add_one(x: int, marker: str) -> int:
    Path(marker).write_text("ran")
    return x + 1


@sluice.remote
def submit_infeasible() -> None:
    sluice.get(needs_gpu.remote(), timeout=5)


@sluice.remote(num_gpus=1)
def needs_gpu() -> str:
    return "unreachable"


@sluice.remote
def identity(x):
    return x


@sluice.remote
class Service:
    def ping(self) -> str:
        return "pong"


# -- crashed workers and retries -------------------------------------------------------

def test_a_worker_that_dies_mid_task_is_replaced_and_the_task_retried(tmp_path: Path) -> None:
    marker = str(tmp_path / "attempts")
    pid = sluice.get(crash_on_first_attempt.remote(marker), timeout=60)
    assert attempts(marker) == 2
    assert pid != int(Path(marker + ".pid").read_text())  # a fresh worker ran the retry
    assert sluice.get(identity.remote(5), timeout=30) == 5  # the pool is whole again


def test_a_task_that_always_kills_its_worker_raises_worker_crashed_error(tmp_path: Path) -> None:
    marker = str(tmp_path / "attempts")
    with pytest.raises(WorkerCrashedError, match=r"always_crash died \(exit code 1\).*max_retries"):
        sluice.get(always_crash.options(max_retries=1).remote(marker), timeout=60)
    assert attempts(marker) == 2  # the first try and max_retries=1 retry


def test_retry_exceptions_true_retries_a_raising_task_until_it_succeeds(tmp_path: Path) -> None:
    marker = str(tmp_path / "attempts")
    assert sluice.get(flaky.remote(marker), timeout=30) == 3
    assert attempts(marker) == 3


def test_retry_exceptions_list_does_not_retry_other_types(tmp_path: Path) -> None:
    marker = str(tmp_path / "attempts")
    with pytest.raises(TypeError, match="not worth a retry"):
        sluice.get(wrong_type.remote(marker), timeout=30)
    assert attempts(marker) == 1


def test_retry_exceptions_list_retries_the_listed_types(tmp_path: Path) -> None:
    marker = str(tmp_path / "attempts")
    assert sluice.get(flaky.options(retry_exceptions=[ValueError]).remote(marker), timeout=30) == 3


def test_retry_exceptions_lists_a_type_the_worker_cannot_import(tmp_path: Path) -> None:
    # A type local to a function (or defined in a script's __main__) travels by value.
    class Transient(Exception):
        pass

    @sluice.remote(max_retries=2, retry_exceptions=[Transient])
    def fails_twice(marker: str) -> int:
        if bump(marker) < 3:
            raise Transient("try again")
        return 7

    marker = str(tmp_path / "attempts")
    assert sluice.get(fails_twice.remote(marker), timeout=30) == 7
    assert attempts(marker) == 3


def test_application_errors_are_not_retried_by_default(tmp_path: Path) -> None:
    marker = str(tmp_path / "attempts")
    with pytest.raises(ValueError, match="no retry by default"):
        sluice.get(raise_once.remote(marker), timeout=30)
    assert attempts(marker) == 1


# -- timeouts and cancellation ---------------------------------------------------------

def test_get_timeout_on_a_slow_task_raises_get_timeout_error(gate: Path) -> None:
    ref = held_until.remote(str(gate))
    with pytest.raises(GetTimeoutError, match=r"timed out after 0\.2s") as info:
        sluice.get(ref, timeout=0.2)  # the gate is shut: only the timeout can end this get
    assert isinstance(info.value, TimeoutError)
    sluice.cancel(ref, force=True)  # kills the worker rather than wait for it
    with pytest.raises(TaskCancelledError, match="held_until was cancelled"):
        sluice.get(ref, timeout=60)


def test_cancel_of_a_task_queued_behind_busy_workers(tmp_path: Path, gate: Path) -> None:
    busy = [held_until.remote(str(gate)) for _ in range(2)]  # both CPUs, until the gate opens
    marker = tmp_path / "ran"
    queued = touch.remote(str(marker))
    sluice.cancel(queued)
    with pytest.raises(TaskCancelledError, match="touch was cancelled"):
        sluice.get(queued, timeout=60)
    gate.touch()
    sluice.get(busy, timeout=60)
    assert sluice.get(identity.remote(1), timeout=30) == 1
    assert not marker.exists(), "a cancelled task that had not started must never run"


# -- demands nothing can satisfy -------------------------------------------------------

def test_a_gpu_task_on_a_cpu_only_runtime_fails_at_once_naming_num_gpus() -> None:
    # At once: .remote() itself raises; nothing is queued to wait for a GPU.
    with pytest.raises(InfeasibleResourceError, match=r"num_gpus=1 requested but this sluice runtime has 0"):
        needs_gpu.remote()
    with pytest.raises(ValueError, match="num_gpus"):  # it is also a ValueError
        identity.options(num_gpus=1).remote(1)


def test_an_unknown_custom_resource_fails_at_once_naming_it() -> None:
    with pytest.raises(InfeasibleResourceError, match=r"resources=\{'tpu': 1\}.*has 0 of 'tpu'"):
        identity.options(resources={"tpu": 1}).remote(1)
    with pytest.raises(InfeasibleResourceError, match="num_cpus=3"):
        identity.options(num_cpus=3).remote(1)


def test_an_actor_that_needs_a_gpu_fails_at_once_naming_num_gpus() -> None:
    with pytest.raises(InfeasibleResourceError, match=r"actor Service: num_gpus=1"):
        Service.options(num_gpus=1).remote()


def test_an_infeasible_task_submitted_by_a_task_fails_instead_of_hanging() -> None:
    with pytest.raises(InfeasibleResourceError, match="num_gpus=1"):
        sluice.get(submit_infeasible.remote(), timeout=60)


# -- bad input -------------------------------------------------------------------------

def test_an_unpicklable_argument_is_named_by_position_and_type() -> None:
    with pytest.raises(SerializationError, match=r"argument 0 of identity \(type _thread\.lock\)"):
        identity.remote(threading.Lock())
    with pytest.raises(TypeError, match=r"keyword argument 'x'.*lock"):
        identity.remote(x=threading.Lock())


def test_a_function_that_captures_something_unpicklable_is_refused_naming_it() -> None:
    lock = threading.Lock()

    def uses_lock() -> bool:
        return lock.locked()

    with pytest.raises(SerializationError, match=r"remote function .*uses_lock cannot be pickled.*move what it"):
        sluice.remote(uses_lock).remote()


def test_a_task_error_carries_the_remote_traceback() -> None:
    with pytest.raises(ValueError) as info:
        sluice.get(parse_config.remote("eighty"), timeout=30)
    err = info.value
    assert isinstance(err, TaskError)
    text = str(err)
    assert text.startswith("task parse_config failed:")
    assert "Traceback (most recent call last)" in text
    assert 'in parse_config' in text and 'return {"port": int(text)}' in text
    assert "invalid literal for int() with base 10: 'eighty'" in text


def test_a_task_whose_dependency_failed_fails_with_that_error(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = parse_config.remote("x")
    downstream = add_one.remote(bad, str(marker))
    with pytest.raises(ValueError, match="task parse_config failed") as info:
        sluice.get(downstream, timeout=30)
    assert "invalid literal" in str(info.value)
    assert not marker.exists(), "a task whose input failed must not run"


def test_get_of_a_plain_value_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"get\(\) takes an ObjectRef or a list of ObjectRefs, got int 5"):
        sluice.get(5)
    with pytest.raises(TypeError, match="ObjectRef"):
        sluice.get([sluice.put(1), 5])
