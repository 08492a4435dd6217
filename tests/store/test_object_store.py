"""Tests of sluice.store.object_store: capacity, LRU spilling, pins, restore, cleanup."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.exceptions import InternalError, ObjectLostError
from sluice.store.object_store import ObjectStore
from sluice.store.serialization import serialize, to_bytes
from sluice.store.shm import (
    SegmentReader,
    new_session_id,
    segment_name,
    segment_path,
    write_segment,
)
from tests.store.helpers import run_child, session_files

MB = 1 << 20


def blob(seed: int, size: int = MB) -> np.ndarray:
    """``size`` random bytes, different for each seed."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@pytest.fixture
def store(session: str, tmp_path: Path) -> Iterator[ObjectStore]:
    """A store with room for three 1 MB blobs (and a little more)."""
    with ObjectStore(session, capacity_bytes=3 * MB + 4096, spill_dir=tmp_path / "spill") as s:
        yield s


def put_value(store: ObjectStore, object_id: int, value: object) -> str:
    return store.put(object_id, serialize(value))


def test_put_then_get_round_trips(store: ObjectStore) -> None:
    obj = serialize({"a": blob(1), "b": "text"})
    name = store.put(1, obj)
    assert name == f"sluice-{store.session}-s1"  # 1 MB and up: a recyclable slot
    assert os.path.getsize(segment_path(name)) == obj.nbytes == store.size_of(1)
    assert store.used_bytes == obj.nbytes and store.contains(1)
    small = store.put(2, serialize("small"))
    assert small == segment_name(store.session, 2)
    value = store.get(1)
    np.testing.assert_array_equal(value["a"], blob(1))
    assert value["a"].flags.writeable is False


def test_putting_past_capacity_spills_the_least_recently_used(store: ObjectStore) -> None:
    for object_id in range(1, 4):
        put_value(store, object_id, blob(object_id))
    assert store.num_spilled == 0
    store.ensure_local(1)  # 1 becomes the most recently used; 2 is now the oldest
    put_value(store, 4, blob(4))
    assert store.is_spilled(2) and not store.is_spilled(1)
    assert not os.path.exists(segment_path(segment_name(store.session, 2)))
    assert store.num_spilled == 1 and store.spilled_bytes == store.size_of(2)
    assert store.used_bytes <= store.capacity_bytes


def test_spilled_objects_come_back_byte_identical(store: ObjectStore, tmp_path: Path) -> None:
    objs = {object_id: serialize(blob(object_id)) for object_id in range(1, 6)}
    for object_id, obj in objs.items():
        store.put(object_id, obj)
    assert store.is_spilled(1) and store.is_spilled(2)
    assert (tmp_path / "spill" / segment_name(store.session, 1)).exists()
    reader = SegmentReader()
    for object_id, obj in objs.items():
        name = store.ensure_local(object_id)
        assert bytes(reader.view(name)) == to_bytes(obj)
        reader.drop(name)
        np.testing.assert_array_equal(store.get(object_id), blob(object_id))
    assert store.num_restored >= 2


def test_pinned_objects_are_never_spilled(store: ObjectStore) -> None:
    put_value(store, 1, blob(1))
    store.pin(1)
    for object_id in range(2, 7):
        put_value(store, object_id, blob(object_id))
    assert not store.is_spilled(1)
    store.unpin(1)
    put_value(store, 7, blob(7))
    assert store.is_spilled(1)


def test_pins_are_counted(store: ObjectStore) -> None:
    put_value(store, 1, blob(1))
    store.pin(1)
    store.pin(1)
    store.unpin(1)
    for object_id in range(2, 6):
        put_value(store, object_id, blob(object_id))
    assert not store.is_spilled(1)
    store.unpin(1)
    with pytest.raises(InternalError, match=r"unpin of object 1, which is not pinned"):
        store.unpin(1)


def test_newcomer_is_spilled_when_everything_else_is_pinned(store: ObjectStore) -> None:
    for object_id in range(1, 4):
        put_value(store, object_id, blob(object_id))
        store.pin(object_id)
    put_value(store, 4, blob(4))
    assert store.is_spilled(4)
    assert all(not store.is_spilled(object_id) for object_id in range(1, 4))


def test_capacity_overshoots_when_nothing_can_spill(store: ObjectStore) -> None:
    for object_id in range(1, 4):
        put_value(store, object_id, blob(object_id))
        store.pin(object_id)
    put_value(store, 4, blob(4))
    store.pin(4)
    store.ensure_local(4)  # restoring a pinned object with no room: overshoot
    assert store.used_bytes > store.capacity_bytes
    assert store.num_spilled == 1


def test_an_object_larger_than_capacity_goes_to_disk_and_comes_back(
    session: str, tmp_path: Path
) -> None:
    with ObjectStore(session, capacity_bytes=MB // 2, spill_dir=tmp_path / "spill") as store:
        put_value(store, 1, blob(1))
        assert store.is_spilled(1) and store.used_bytes == 0
        np.testing.assert_array_equal(store.get(1), blob(1))
        assert not store.is_spilled(1)


def test_views_stay_valid_after_their_object_is_spilled(store: ObjectStore) -> None:
    put_value(store, 1, blob(1))
    array = store.get(1)
    for object_id in range(2, 6):
        put_value(store, object_id, blob(object_id))
    assert store.is_spilled(1)
    np.testing.assert_array_equal(array, blob(1))


def test_a_vanished_spill_file_raises_object_lost(store: ObjectStore, tmp_path: Path) -> None:
    for object_id in range(1, 5):
        put_value(store, object_id, blob(object_id))
    path = tmp_path / "spill" / segment_name(store.session, 1)
    path.unlink()
    with pytest.raises(ObjectLostError, match=rf"object 1 was spilled to {path}, but that file"):
        store.get(1)


def test_unknown_objects_raise_object_lost(store: ObjectStore) -> None:
    with pytest.raises(ObjectLostError, match=r"cannot read object ff: the store does not hold it"):
        store.get(255)
    with pytest.raises(ObjectLostError, match=r"cannot pin object ff"):
        store.pin(255)
    with pytest.raises(ObjectLostError, match=r"cannot size object ff"):
        store.size_of(255)


def test_free_removes_local_and_spilled_objects(store: ObjectStore, tmp_path: Path) -> None:
    for object_id in range(1, 5):
        put_value(store, object_id, blob(object_id))
    assert store.is_spilled(1)
    assert store.free(1) is None  # spilled: its slot left with it
    slot = store.free(4)
    assert slot is not None  # local, in a slot: the caller decides when it is reusable
    store.free(99)  # unknown: no-op
    assert not store.contains(1) and not store.contains(4)
    assert store.spilled_bytes == 0
    assert store.used_bytes == store.size_of(2) + store.size_of(3)
    assert sorted(os.listdir(tmp_path / "spill")) == []
    assert len(session_files(store.session)) == 3
    store.discard_slot(slot)
    assert len(session_files(store.session)) == 2
    assert segment_path(slot) not in session_files(store.session)
    assert slot in store.retired


def test_a_released_slot_is_reused_in_place(store: ObjectStore) -> None:
    first = put_value(store, 1, blob(1))
    slot = store.free(1)
    assert slot == first
    store.release_slot(slot)
    assert store.pooled_bytes == os.path.getsize(segment_path(slot))
    second = put_value(store, 2, blob(2))
    assert second == first and store.pooled_bytes == 0  # same file, overwritten in place
    np.testing.assert_array_equal(store.get(2), blob(2))


def test_a_slot_with_a_live_view_here_is_not_reused(store: ObjectStore) -> None:
    put_value(store, 1, blob(1))
    view = store.get(1)  # a value this process still holds
    slot = store.free(1)
    store.release_slot(slot)
    assert store.pooled_bytes == 0
    other = put_value(store, 2, blob(2))
    assert other != slot
    np.testing.assert_array_equal(view, blob(1))  # untouched by the second put
    del view
    put_value(store, 3, blob(3))  # the view is gone: the slot is pooled now
    assert store.pooled_bytes == 0 and store.ensure_local(3) == slot


def test_put_of_an_existing_id_is_a_bug(store: ObjectStore) -> None:
    put_value(store, 1, 1)
    with pytest.raises(InternalError, match=r"object 1 is already in the store"):
        put_value(store, 1, 2)


def test_adopt_accounts_a_segment_a_worker_wrote(store: ObjectStore) -> None:
    name = segment_name(store.session, 42)
    out = run_child(
        "import numpy as np\n"
        "from sluice.store.serialization import serialize\n"
        "from sluice.store.shm import write_segment\n"
        f"print(write_segment({name!r}, serialize(np.arange(100_000))))\n"
    )
    size = int(out)
    store.adopt(42, size)
    assert store.used_bytes == size
    np.testing.assert_array_equal(store.get(42), np.arange(100_000))


def test_adopt_checks_the_segment(store: ObjectStore) -> None:
    with pytest.raises(ObjectLostError, match=r"cannot adopt object 7: its segment .* does not"):
        store.adopt(7, 100)
    store.put(8, serialize("x"))
    store.free(8)
    name = segment_name(store.session, 9)
    size = write_segment(name, serialize("abc"))
    with pytest.raises(InternalError, match=rf"size={size + 1}\) but segment '{name}' has {size}"):
        store.adopt(9, size + 1)


def test_close_leaves_nothing_behind(session: str, tmp_path: Path) -> None:
    spill_dir = tmp_path / "made-by-store"
    store = ObjectStore(session, capacity_bytes=2 * MB, spill_dir=spill_dir)
    for object_id in range(1, 5):
        put_value(store, object_id, blob(object_id))
    write_segment(segment_name(session, 77), serialize("never adopted"))
    assert store.num_spilled > 0 and session_files(session)
    store.close()
    store.close()
    assert session_files(session) == []
    assert not spill_dir.exists()
    with pytest.raises(InternalError, match=r"is closed; create a new one"):
        put_value(store, 5, 5)


def test_close_keeps_a_spill_dir_it_did_not_create(session: str, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with ObjectStore(session, capacity_bytes=MB, spill_dir=tmp_path) as store:
        put_value(store, 1, blob(1))
        put_value(store, 2, blob(2))
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_capacity_must_be_positive(session: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"capacity_bytes=0; the object store needs a positive"):
        ObjectStore(session, capacity_bytes=0, spill_dir=tmp_path)


@given(
    sizes=st.lists(st.integers(0, 200_000), min_size=1, max_size=12),
    capacity=st.integers(1, 400_000),
    reads=st.lists(st.integers(0, 11), max_size=12),
)
@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_object_survives_any_spilling(
    tmp_path: Path, sizes: list[int], capacity: int, reads: list[int]
) -> None:
    session = new_session_id()
    objs = {object_id: serialize(blob(object_id, size)) for object_id, size in enumerate(sizes)}
    with ObjectStore(session, capacity_bytes=capacity, spill_dir=tmp_path / session) as store:
        for object_id, obj in objs.items():
            store.put(object_id, obj)
            assert store.used_bytes <= capacity  # nothing pinned: capacity holds
        for object_id in reads:
            if object_id in objs:
                expected = blob(object_id, sizes[object_id])
                np.testing.assert_array_equal(store.get(object_id), expected)
        reader = SegmentReader()
        for object_id, obj in objs.items():
            assert bytes(reader.view(store.ensure_local(object_id))) == to_bytes(obj)
        assert store.used_bytes + store.spilled_bytes == sum(o.nbytes for o in objs.values())
    assert session_files(session) == []
