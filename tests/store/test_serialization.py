"""Tests of sluice.store.serialization: round trips, zero copy, fallbacks, contained ids."""

from __future__ import annotations

import pickle
import struct
import sys
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.exceptions import InternalError, SerializationError
from sluice.store.serialization import (
    ALIGNMENT,
    ARROW,
    PICKLE5,
    SerializedObject,
    dumps,
    layout_pieces,
    loads,
    note_contained_id,
    serialize,
    to_bytes,
    write_to,
)
from tests.store.helpers import address_range, data_address, run_child


class FakeRef:
    """Stands in for the executor's ObjectRef: notes its id while being pickled."""

    def __init__(self, object_id: int) -> None:
        self.object_id = object_id

    def __reduce__(self) -> tuple[Any, ...]:
        note_contained_id(self.object_id)
        return (FakeRef, (self.object_id,))


class NestingRef(FakeRef):
    """A reference whose pickling serializes another value on its own (nested call)."""

    def __reduce__(self) -> tuple[Any, ...]:
        inner = serialize([FakeRef(1000 + self.object_id)])
        assert inner.contained_ids == (1000 + self.object_id,)
        note_contained_id(self.object_id)
        return (FakeRef, (self.object_id,))


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, -(2**70), 3.5, True, None, "", "héllo", b"\x00bytes", (), [], {},
     {"a": [1, (2, 3.0)], "b": {"c": None}}, {1, 2}, frozenset({"x"}), complex(1, 2),
     [[[]]], bytearray(b"abc")],
)
def test_plain_values_round_trip(value: Any) -> None:
    assert loads(dumps(value)) == value
    assert type(loads(dumps(value))) is type(value)


_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
)


@given(st.recursive(
    _SCALARS,
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
))
@settings(max_examples=60, deadline=None)
def test_nested_containers_round_trip(value: Any) -> None:
    assert loads(dumps(value)) == value


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10, dtype=np.float64),
        np.arange(7, dtype=np.int8),
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.array([1 + 2j, 3j], dtype=np.complex128),
        np.array([True, False, True]),
        np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
        np.zeros(3, dtype=[("x", np.int16), ("y", np.float32)]),
        np.array(42.0),
        np.empty((0, 5), dtype=np.float32),
        np.array(["a", None, 3], dtype=object),
    ],
    ids=["f8", "i1", "big-endian", "c16", "bool", "datetime", "struct", "0-d", "empty", "object"],
)
def test_numpy_arrays_round_trip(array: np.ndarray) -> None:
    back = loads(dumps(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "make", [lambda a: a[:, ::3], lambda a: a.T, lambda a: a[::-1], lambda a: a[1:, 2:5].T],
    ids=["strided", "fortran", "reversed", "sliced-transposed"],
)
def test_non_contiguous_arrays_round_trip(make: Any) -> None:
    array = make(np.arange(60, dtype=np.float64).reshape(6, 10))
    back = loads(dumps(array))
    np.testing.assert_array_equal(back, array)


def test_pandas_dataframe_round_trips() -> None:
    frame = pd.DataFrame({"x": np.arange(5), "y": list("abcde"), "z": np.linspace(0, 1, 5)})
    pd.testing.assert_frame_equal(loads(dumps(frame)), frame)


def test_arrow_table_round_trips_as_a_table() -> None:
    table = pa.table({"x": list(range(100)), "s": [str(i) for i in range(100)]})
    obj = serialize(table)
    assert obj.kind == ARROW and len(obj.buffers) == 1
    back = loads(to_bytes(obj))
    assert isinstance(back, pa.Table) and back.equals(table)


def test_arrow_record_batch_round_trips_as_a_batch() -> None:
    batch = pa.record_batch({"x": [1.0, 2.0, None]})
    back = loads(dumps(batch))
    assert isinstance(back, pa.RecordBatch) and back.equals(batch)


def test_empty_arrow_table_keeps_its_schema() -> None:
    table = pa.table({"x": pa.array([], pa.int64())})
    back = loads(dumps(table))
    assert back.schema == table.schema and back.num_rows == 0


# -- zero copy and layout -------------------------------------------------------------


def test_serialize_does_not_copy_array_data() -> None:
    array = np.arange(1000, dtype=np.float64)
    obj = serialize(array)
    assert obj.kind == PICKLE5 and len(obj.buffers) == 1
    assert address_range(obj.buffers[0])[0] == data_address(array)


def test_deserialized_array_is_a_view_over_the_source_buffer() -> None:
    data = dumps(np.arange(1000, dtype=np.int64))
    start, end = address_range(data)
    back = loads(data)
    assert start <= data_address(back) and data_address(back) + back.nbytes <= end
    assert back.flags.writeable is False  # bytes are immutable


def test_writable_source_gives_a_writable_view() -> None:
    obj = serialize(np.arange(16, dtype=np.int32))
    target = bytearray(obj.nbytes)
    write_to(obj, memoryview(target))
    back = loads(target)
    back[0] = 99
    assert loads(target)[0] == 99  # the same memory, no copy


def test_arrow_table_is_read_without_copy() -> None:
    data = dumps(pa.table({"x": np.arange(1000, dtype=np.int64)}))
    start, end = address_range(data)
    column = loads(data).column("x").chunk(0)
    address = column.buffers()[1].address
    assert start <= address < end


def test_buffers_start_on_64_byte_boundaries() -> None:
    value = {"a": np.ones(3, np.int8), "b": np.ones(5, np.int8), "c": np.ones(70, np.uint8)}
    obj = serialize(value)
    assert len(obj.buffers) == 3
    data = to_bytes(obj)
    assert len(data) == obj.nbytes
    header = struct.Struct("<4sBBHIQ")
    assert header.unpack_from(data)[0] == b"SLCE"
    for index in range(3):
        offset, length = struct.unpack_from("<QQ", data, header.size + 16 * index)
        assert offset % ALIGNMENT == 0
        assert data[offset : offset + length] == bytes(obj.buffers[index])


def test_write_to_and_to_bytes_agree_and_leave_the_tail_alone() -> None:
    obj = serialize([np.arange(3), "text", np.ones((2, 2))])
    target = bytearray(b"\xff" * (obj.nbytes + 10))
    write_to(obj, memoryview(target))
    assert bytes(target[: obj.nbytes]) == to_bytes(obj) == b"".join(map(bytes, layout_pieces(obj)))
    assert target[obj.nbytes :] == b"\xff" * 10


def test_write_to_rejects_a_short_buffer() -> None:
    obj = serialize("x" * 100)
    with pytest.raises(InternalError, match=rf"buffer of 10 bytes for an object of {obj.nbytes}"):
        write_to(obj, memoryview(bytearray(10)))


def test_nbytes_of_a_small_value_is_header_plus_pickle() -> None:
    obj = serialize(7)
    assert obj.nbytes == len(to_bytes(obj)) == 20 + len(obj.main)


# -- fallbacks and errors -------------------------------------------------------------


def test_lambda_round_trips_through_cloudpickle() -> None:
    offset = 10
    back = loads(dumps(lambda x: x + offset))
    assert back(1) == 11


def test_class_defined_in_a_test_round_trips_through_cloudpickle() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

        def doubled(self) -> int:
            return 2 * self.x

    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(Point(1), protocol=5)
    back = loads(dumps(Point(21)))
    assert back.doubled() == 42


def test_main_module_function_travels_by_value() -> None:
    # Plain pickle would store __main__.add_one by name, which this process (whose
    # __main__ is pytest) cannot resolve; the __main__ check sends it by value.
    hex_data = run_child(
        "import sys\n"
        "from sluice.store.serialization import dumps\n"
        "def add_one(x):\n    return x + 1\n"
        "print(dumps(add_one).hex())\n"
    )
    assert loads(bytes.fromhex(hex_data.strip()))(41) == 42


def test_unpicklable_value_names_its_type() -> None:
    expected = (r"cannot serialize a value of type _thread\.lock: TypeError: cannot pickle "
                r"'_thread\.lock' object; make the value picklable")
    with pytest.raises(SerializationError, match=expected):
        serialize(threading.Lock())


def test_unpicklable_member_names_the_container_and_the_member() -> None:
    with pytest.raises(SerializationError, match=r"type builtins\.dict: .*'_thread\.lock'"):
        serialize({"lock": threading.Lock()})


def test_garbage_is_rejected_with_the_remedy() -> None:
    with pytest.raises(SerializationError, match=r"not written by sluice"):
        loads(b"not a sluice object at all")
    with pytest.raises(SerializationError, match=r"cannot deserialize 3 bytes"):
        loads(b"abc")


def test_truncated_buffers_are_detected() -> None:
    data = dumps(np.arange(100))
    with pytest.raises(SerializationError, match=r"it is truncated"):
        loads(data[:-8])


def test_unimportable_class_raises_serialization_error() -> None:
    stream = pickle.dumps(1).replace(b"K\x01", b"cno_such_module\nThing\n)\x81")
    data = to_bytes(SerializedObject(PICKLE5, stream, (), ()))
    with pytest.raises(SerializationError, match=r"cannot unpickle a value: ModuleNotFoundError"):
        loads(data)


# -- contained ids --------------------------------------------------------------------


def test_contained_ids_are_collected_in_order() -> None:
    obj = serialize({"a": FakeRef(3), "b": [FakeRef(1), 5, FakeRef(2)]})
    assert obj.contained_ids == (3, 1, 2)
    assert serialize([1, 2]).contained_ids == ()


def test_a_reference_object_met_twice_is_noted_once() -> None:
    ref = FakeRef(8)
    assert serialize([ref, ref, FakeRef(8)]).contained_ids == (8, 8)  # pickle's memo


def test_nested_serialize_calls_keep_separate_lists() -> None:
    obj = serialize([FakeRef(1), NestingRef(2), FakeRef(3)])
    assert obj.contained_ids == (1, 2, 3)


def test_ids_noted_outside_serialize_are_ignored() -> None:
    note_contained_id(5)
    pickle.dumps(FakeRef(6))
    assert serialize(FakeRef(7)).contained_ids == (7,)


def test_cloudpickle_fallback_does_not_count_ids_twice() -> None:
    obj = serialize([FakeRef(4), lambda: 0])  # plain pickle notes 4, then fails
    assert obj.contained_ids == (4,)


def test_contained_ids_survive_threads() -> None:
    results: dict[int, tuple[int, ...]] = {}

    def work(index: int) -> None:
        for _ in range(200):
            results[index] = serialize([FakeRef(index) for _ in range(3)]).contained_ids

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: (i, i, i) for i in range(4)}


def test_preload_decoders_imports_numpy() -> None:
    out = run_child(
        "import sys\n"
        "from sluice.store.serialization import preload_decoders\n"
        "before = 'numpy' in sys.modules\n"
        "preload_decoders()\n"
        "print(before, 'numpy' in sys.modules)\n"
    )
    assert out.split() == ["False", "True"]


def test_serializing_while_another_thread_is_still_importing_pyarrow(monkeypatch) -> None:
    """A module half-way through its import (no ``Table`` defined yet) is in sys.modules;
    the runtime's I/O thread serialising an error then must not fail (it killed the
    thread, and the driver waited forever)."""
    import types

    from sluice.store import serialization

    monkeypatch.setitem(sys.modules, "pyarrow", types.ModuleType("pyarrow"))
    blob = serialization.dumps(ValueError("an actor died"))
    assert str(serialization.loads(blob)) == "an actor died"
