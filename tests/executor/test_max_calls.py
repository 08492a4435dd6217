"""``@remote(max_calls=N)``: a pool worker exits after running N calls of the function."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest

import sluice


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote(max_calls=2)
def pid_twice() -> int:
    return os.getpid()


@sluice.remote
def pid() -> int:
    return os.getpid()


def test_a_worker_runs_at_most_max_calls_calls_of_the_function() -> None:
    pids = sluice.get([pid_twice.remote() for _ in range(12)])
    per_process = Counter(pids)
    assert max(per_process.values()) <= 2, per_process
    assert len(per_process) >= 6
    # Those processes exited: a plain task runs in none of them.
    used_up = {p for p, calls in per_process.items() if calls == 2}  # these exited
    assert used_up  # (a worker given one call only is not used up, and may run other tasks)
    assert not set(sluice.get([pid.remote() for _ in range(8)])) & used_up


@sluice.remote(max_calls=1)
def leaky(i: int) -> tuple[int, int]:
    import builtins

    state = builtins.__dict__.setdefault("_sluice_test_leaked", [])
    state.append(i)  # process state a fresh process starts without
    return os.getpid(), len(state)


def test_max_calls_one_gives_every_call_a_fresh_process() -> None:
    results = sluice.get([leaky.remote(i) for i in range(6)])
    assert len({p for p, _ in results}) == 6
    assert {n for _, n in results} == {1}


def test_without_max_calls_workers_are_reused() -> None:
    assert len(set(sluice.get([pid.remote() for _ in range(20)]))) <= 2 + 4


def test_max_calls_is_checked_and_set_only_in_the_decorator() -> None:
    with pytest.raises(ValueError, match=r"max_calls=-1 must be an int >= 0 \(0: no limit\)"):
        sluice.remote(max_calls=-1)(lambda: 1)
    with pytest.raises(ValueError, match=r"options\(max_calls=...\): max_calls is set where the "
                                         r"function is declared"):
        pid.options(max_calls=3)
    with pytest.raises(ValueError, match="runs with .remote\\(\\) only"):
        pid_twice.bind()
