"""Starting and stopping the runtime: init, implicit init, shutdown, and cleanup of shared memory.

Each test here starts (and the fixture stops) its own runtime, since what is
tested is the start and the stop themselves.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from sluice.executor import context
from tests.executor.helpers import current_session, run_driver, session_files, wait_until


@sluice.remote
def square(x: int) -> int:
    return x * x


@sluice.remote
def make_big(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@pytest.fixture(autouse=True)
def stopped_after_each_test() -> Iterator[None]:
    assert not sluice.is_initialized()
    yield
    sluice.shutdown()


def test_init_then_shutdown_toggles_is_initialized() -> None:
    assert sluice.is_initialized() is False
    sluice.init(num_cpus=1)
    assert sluice.is_initialized() is True
    assert sluice.cluster_resources()["CPU"] == 1
    assert sluice.get(square.remote(7)) == 49
    sluice.shutdown()
    assert sluice.is_initialized() is False
    sluice.shutdown()  # a second shutdown is a no-op
    assert sluice.is_initialized() is False


def test_second_init_raises_unless_told_to_ignore_it() -> None:
    sluice.init(num_cpus=1)
    with pytest.raises(RuntimeError, match=r"already called.*shutdown"):
        sluice.init(num_cpus=1)
    sluice.init(num_cpus=1, ignore_reinit_error=True)
    assert sluice.get(square.remote(3)) == 9


def test_init_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"num_cpus=-1"):
        sluice.init(num_cpus=-1)
    with pytest.raises(ValueError, match=r"object_store_memory=0"):
        sluice.init(object_store_memory=0)
    assert not sluice.is_initialized()


def test_first_remote_call_starts_a_default_runtime() -> None:
    assert not sluice.is_initialized()
    ref = square.remote(5)
    assert sluice.is_initialized()
    assert sluice.get(ref, timeout=30) == 25
    assert sluice.cluster_resources()["CPU"] == (os.cpu_count() or 1)


def test_first_put_starts_a_default_runtime() -> None:
    ref = sluice.put({"k": 1})
    assert sluice.is_initialized()
    assert sluice.get(ref) == {"k": 1}


def test_shutdown_removes_every_shared_memory_file_and_the_spill_dir() -> None:
    sluice.init(num_cpus=2)
    session = current_session()
    spill_dir = context.current().spill_dir
    kept = [sluice.put(np.ones(1_000_000)), make_big.remote(2_000_000)]  # driver- and worker-written
    assert sluice.get(kept[1], timeout=30)[-1] == 1_999_999
    arena = [f for f in session_files(session) if f.endswith("-s0")]  # the store's reserve
    assert len(session_files(session)) == 2 + len(arena)
    assert os.path.isdir(spill_dir)
    sluice.shutdown()
    assert session_files(session) == []
    assert not os.path.exists(spill_dir)
    del kept  # refs outliving their runtime are harmless


def test_workers_import_numpy_before_any_value_reaches_them() -> None:
    sluice.init(num_cpus=1)
    [worker] = context.current().scheduler.all_workers()

    def numpy_loaded() -> bool:
        with open(f"/proc/{worker.proc.pid}/maps") as maps:
            return "_multiarray_umath" in maps.read()

    assert wait_until(numpy_loaded), "a worker that was sent nothing should still load numpy"


def test_a_ref_outliving_its_runtime_cannot_be_read_from_the_next_one() -> None:
    sluice.init(num_cpus=1)
    ref = sluice.put(np.zeros(100_000))
    sluice.shutdown()
    sluice.init(num_cpus=1)
    with pytest.raises(sluice.exceptions.ObjectLostError, match="gone"):
        sluice.get(ref, timeout=5)


KILLED_DRIVER = """
import os, numpy as np, sluice
from sluice.executor import context
sluice.init(num_cpus=1, object_store_memory=3_000_000)
refs = [sluice.put(np.full(250_000, float(i))) for i in range(2)]  # 2 MB each: one spills
rt = context.current()
assert rt.store.num_spilled == 1
print(rt.session, rt.spill_dir, flush=True)
os._exit(0)
"""


def test_init_removes_what_a_killed_driver_left_in_shared_memory() -> None:
    child = run_driver(KILLED_DRIVER)
    assert child.returncode == 0, child.stderr
    dead_session, spill_dir = child.stdout.split()
    try:
        assert session_files(dead_session), "the killed driver should have left a segment in /dev/shm"
        sluice.init(num_cpus=1)
        assert session_files(dead_session) == []
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def test_init_removes_the_spill_dir_a_killed_driver_left_on_disk() -> None:
    child = run_driver(KILLED_DRIVER)
    assert child.returncode == 0, child.stderr
    _, spill_dir = child.stdout.split()
    try:
        assert os.listdir(spill_dir), "the killed driver should have left a spilled object on disk"
        sluice.init(num_cpus=1)
        assert not os.path.exists(spill_dir), f"init() left the dead driver's spill dir {spill_dir}"
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
