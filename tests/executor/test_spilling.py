"""A store smaller than its objects: spilling to disk and restoring, seen through the API."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from sluice.executor import context
from tests.executor.helpers import current_session, session_files

MB = 1_000_000


@pytest.fixture(scope="module")
def small_store() -> Iterator[str]:
    """A runtime whose store holds 60 MB in shared memory before it spills."""
    sluice.init(num_cpus=2, object_store_memory=60 * MB)
    yield current_session()
    sluice.shutdown()


@sluice.remote
def total(arr: np.ndarray) -> float:
    return float(arr.sum())


def test_objects_past_the_store_capacity_spill_and_come_back_intact(small_store: str) -> None:
    arrays = [np.full(20 * MB // 8, float(i)) for i in range(5)]
    refs = [sluice.put(a) for a in arrays]
    rt = context.current()
    local_bytes = sum(os.path.getsize(p) for p in session_files(small_store))
    assert local_bytes <= 60 * MB, f"{local_bytes} bytes in /dev/shm past a 60 MB store"
    assert rt.store.num_spilled > 0
    spilled = os.listdir(rt.spill_dir)
    assert any(name.startswith(f"sluice-{small_store}-") for name in spilled), spilled
    for ref, arr in zip(refs, arrays):
        np.testing.assert_array_equal(sluice.get(ref), arr)
    assert rt.store.num_restored > 0


def test_a_task_reads_a_spilled_object(small_store: str) -> None:
    refs = [sluice.put(np.full(20 * MB // 8, float(i))) for i in range(4)]
    assert context.current().store.is_spilled(refs[0].id)
    assert sluice.get([total.remote(r) for r in refs], timeout=30) == [i * 20 * MB / 8 for i in range(4)]
