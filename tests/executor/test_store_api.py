"""The shared-memory store seen through the API: zero-copy views, Arrow, refcounts, spilling."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import sluice
from sluice.executor import context
from tests.executor.helpers import backing_file, current_session, maps_line_of, wait_until, wait_until_freed

MB = 1_000_000


@pytest.fixture(scope="module")
def runtime() -> Iterator[str]:
    sluice.init(num_cpus=2)
    yield current_session()
    sluice.shutdown()


@sluice.remote
def inspect_array(arr: np.ndarray) -> dict:
    """How the worker sees an array argument: its flags and the mapping behind its data."""
    return {
        "writeable": arr.flags.writeable,
        "maps_line": maps_line_of(arr.__array_interface__["data"][0]),
        "sum": float(arr.sum()),
    }


@sluice.remote
def held_sum(arr: np.ndarray, gate: str) -> float:
    """The sum of ``arr`` once the file ``gate`` exists: the test holds the task running."""
    held_until(gate)
    return float(arr.sum())


def held_until(gate: str) -> None:
    if not wait_until(Path(gate).exists, timeout=60):
        raise TimeoutError(f"the gate {gate} stayed shut for 60 s")


@sluice.remote
def gate_task(gate: str) -> None:
    """Pending until the file ``gate`` exists."""
    held_until(gate)


@sluice.remote
def sleep_then(seconds: float, value=None):
    time.sleep(seconds)
    return value


@sluice.remote
def add_total_column(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return table.append_column("total", pc.add(table["a"], table["b"]))


def test_get_of_a_put_array_is_a_read_only_view_of_shared_memory(runtime: str) -> None:
    original = np.arange(50 * MB // 8, dtype=np.float64)
    ref = sluice.put(original)
    view = sluice.get(ref)
    assert view.flags.writeable is False
    assert not np.shares_memory(view, original)
    np.testing.assert_array_equal(view, original)
    line = maps_line_of(view.__array_interface__["data"][0])
    assert f"/dev/shm/sluice-{runtime}-" in line, line
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1.0


def test_a_task_reads_a_put_array_in_place(runtime: str) -> None:
    arr = np.ones(20 * MB // 8)
    ref = sluice.put(arr)
    seen = sluice.get(inspect_array.remote(ref), timeout=30)
    assert seen["writeable"] is False
    assert f"/dev/shm/sluice-{runtime}-" in seen["maps_line"], seen["maps_line"]
    assert seen["sum"] == arr.size


def test_a_large_array_argument_is_put_once_and_mapped_by_the_worker(runtime: str) -> None:
    seen = sluice.get(inspect_array.remote(np.ones(1_000_000)), timeout=30)
    assert seen["writeable"] is False
    assert f"/dev/shm/sluice-{runtime}-" in seen["maps_line"], seen["maps_line"]


def test_an_arrow_table_round_trips_through_put_get_and_a_task(runtime: str) -> None:
    table = pa.table({"a": np.arange(200_000), "b": np.arange(200_000) * 2, "s": ["x"] * 200_000})
    ref = sluice.put(table)
    back = sluice.get(ref)
    assert isinstance(back, pa.Table) and back.equals(table)
    result = sluice.get(add_total_column.remote(ref), timeout=30)
    assert result.column_names == ["a", "b", "s", "total"]
    assert result["total"].to_pylist()[:3] == [0, 3, 6]
    assert result.drop(["total"]).equals(table)
    assert sluice.get(add_total_column.remote(pa.table({"a": [1], "b": [2]})))["total"].to_pylist() == [3]


def test_dropping_the_last_ref_of_a_put_frees_it_and_its_shared_memory(runtime: str) -> None:
    template = np.zeros(10 * MB // 8 + 123)  # a size no other test uses
    ref = sluice.put(template.copy())
    oid = ref.id
    path = backing_file(sluice.get(ref))
    assert path.startswith(f"/dev/shm/sluice-{runtime}-")
    store = context.current().store
    del ref
    gc.collect()
    assert wait_until(lambda: not store.contains(oid), timeout=60, poll=lambda: sluice.put(0)), \
        "the store still holds an object whose last ObjectRef is gone"
    assert wait_until_freed(path, template), f"{path} still holds the freed object"


def test_a_task_result_is_freed_when_its_last_ref_goes(runtime: str) -> None:
    ref = sleep_then.remote(0.0, np.zeros(2 * MB + 7))
    path = backing_file(sluice.get(ref, timeout=30))
    assert path.startswith(f"/dev/shm/sluice-{runtime}-")
    del ref
    gc.collect()
    assert wait_until_freed(path, np.zeros(2 * MB + 7))


def test_an_object_a_pending_task_needs_is_not_freed_when_its_ref_is_dropped(
        runtime: str, tmp_path: Path) -> None:
    template = np.zeros(10 * MB // 8 + 456)
    arr = template + 3.0
    ref = sluice.put(arr)
    path = backing_file(sluice.get(ref))
    gate = tmp_path / "gate"
    running = held_sum.remote(ref, str(gate))  # dispatched at once, held running below
    queued = sum_after.remote(gate_task.remote(str(gate)), ref)  # cannot start before the gate opens
    del ref
    gc.collect()
    # Were it wrongly freed, a same-size put would reuse or replace its memory now.
    decoys = [sluice.put(template + 9.0) for _ in range(2)]
    gate.touch()
    assert sluice.get([running, queued], timeout=60) == [arr.sum(), arr.sum()]
    del decoys
    # once they are done nothing holds it any more
    assert wait_until_freed(path, template)


@sluice.remote
def sum_after(_gate, arr: np.ndarray) -> float:
    return float(arr.sum())
