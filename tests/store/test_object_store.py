"""Tests of sluice.store.object_store: capacity, LRU spilling, pins, restore, cleanup."""

from __future__ import annotations

import os
import threading
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


# -- the arena: a slot faulted in ahead of the first put ---------------------------------


@pytest.fixture
def arena_store(session: str, tmp_path: Path) -> Iterator[ObjectStore]:
    """A 16 MB store whose 4 MB arena is slot s0."""
    with ObjectStore(session, capacity_bytes=16 * MB, spill_dir=tmp_path / "spill",
                     arena_bytes=4 * MB) as s:
        yield s


def arena_path(store: ObjectStore) -> str:
    return segment_path(f"sluice-{store.session}-s0")


def test_the_arena_is_a_free_slot_from_the_start(arena_store: ObjectStore) -> None:
    assert arena_store.pooled_bytes == 4 * MB and arena_store.used_bytes == 0
    assert session_files(arena_store.session) == [arena_path(arena_store)]


def test_a_put_that_fits_the_arena_lands_in_it_and_other_processes_read_it(
    arena_store: ObjectStore,
) -> None:
    name = put_value(arena_store, 1, blob(1, 3 * MB))
    assert segment_path(name) == arena_path(arena_store)
    assert arena_store.pooled_bytes == 0
    assert arena_store.used_bytes == arena_store.size_of(1) == 4 * MB  # a slot counts whole
    np.testing.assert_array_equal(arena_store.get(1), blob(1, 3 * MB))
    out = run_child(
        "import numpy as np\n"
        "from sluice.store.shm import SegmentReader\n"
        f"print(int(SegmentReader().read({name!r}).astype(np.int64).sum()))\n"
    )
    assert int(out) == int(blob(1, 3 * MB).astype(np.int64).sum())


def test_a_released_arena_is_filled_again_in_place(arena_store: ObjectStore) -> None:
    first = put_value(arena_store, 1, blob(1, 3 * MB))
    reader = SegmentReader()  # as a worker would: its mapping stays cached
    np.testing.assert_array_equal(reader.read(first), blob(1, 3 * MB))
    slot = arena_store.free(1)
    assert slot == first
    arena_store.release_slot(slot)
    assert arena_store.pooled_bytes == 4 * MB
    second = put_value(arena_store, 2, blob(2, 2 * MB + 1))
    assert second == first
    np.testing.assert_array_equal(arena_store.get(2), blob(2, 2 * MB + 1))
    np.testing.assert_array_equal(reader.read(second), blob(2, 2 * MB + 1))  # same mapping, new bytes


def test_a_put_bigger_than_the_arena_gets_a_slot_of_its_own(arena_store: ObjectStore) -> None:
    name = put_value(arena_store, 1, blob(1, 5 * MB))
    assert name == f"sluice-{arena_store.session}-s1"
    assert arena_store.pooled_bytes == 4 * MB  # the arena waits for a put its size
    np.testing.assert_array_equal(arena_store.get(1), blob(1, 5 * MB))


def test_a_put_under_half_the_arena_does_not_take_it(arena_store: ObjectStore) -> None:
    name = put_value(arena_store, 1, blob(1, MB))
    assert name == f"sluice-{arena_store.session}-s1"
    assert arena_store.pooled_bytes == 4 * MB


def test_the_arena_counts_against_capacity_and_is_evicted_for_room(
    session: str, tmp_path: Path,
) -> None:
    with ObjectStore(session, capacity_bytes=12 * MB, spill_dir=tmp_path, arena_bytes=4 * MB) as store:
        put_value(store, 1, blob(1, 5 * MB))
        assert store.used_bytes + store.pooled_bytes <= 12 * MB
        put_value(store, 2, blob(2, 5 * MB))  # 5 + 4 + 5 > 12: the free arena goes first
        assert store.num_spilled == 0 and store.pooled_bytes == 0
        assert arena_path(store) not in session_files(session)
        assert f"sluice-{session}-s0" in store.retired  # readers are told to unmap it
        assert sum(os.path.getsize(p) for p in session_files(session)) <= 12 * MB


def test_an_object_in_the_arena_spills_and_comes_back(session: str, tmp_path: Path) -> None:
    with ObjectStore(session, capacity_bytes=8 * MB, spill_dir=tmp_path, arena_bytes=4 * MB) as store:
        put_value(store, 1, blob(1, 3 * MB))
        put_value(store, 2, blob(2, 5 * MB))  # 4 + 5 > 8: object 1 spills, its slot goes
        assert store.is_spilled(1)
        assert arena_path(store) not in session_files(session)
        np.testing.assert_array_equal(store.get(1), blob(1, 3 * MB))
        assert store.num_restored == 1


def test_close_releases_the_arena_even_while_it_faults_in(session: str, tmp_path: Path) -> None:
    store = ObjectStore(session, capacity_bytes=1 << 30, spill_dir=tmp_path, arena_bytes=256 * MB)
    store.close()
    assert session_files(session) == []
    assert not [t for t in threading.enumerate() if t.name == "sluice-store-arena"]


def test_close_releases_an_arena_in_use(arena_store: ObjectStore) -> None:
    put_value(arena_store, 1, blob(1, 3 * MB))
    arena_store.close()
    assert session_files(arena_store.session) == []


@pytest.mark.parametrize("arena_bytes", [-1, 8 * MB + 1])
def test_arena_bytes_must_fit_in_half_the_capacity(
    session: str, tmp_path: Path, arena_bytes: int,
) -> None:
    with pytest.raises(ValueError, match=rf"arena_bytes={arena_bytes} with capacity_bytes={16 * MB}; "
                                         r"the arena must be between 0 and half the capacity"):
        ObjectStore(session, capacity_bytes=16 * MB, spill_dir=tmp_path, arena_bytes=arena_bytes)
    assert session_files(session) == []


def test_an_arena_below_the_slot_size_is_not_made(session: str, tmp_path: Path) -> None:
    with ObjectStore(session, capacity_bytes=16 * MB, spill_dir=tmp_path, arena_bytes=MB - 1) as store:
        assert store.pooled_bytes == 0 and session_files(session) == []


def test_puts_still_work_when_the_arena_could_not_fault_in(session: str, tmp_path: Path) -> None:
    # A file size limit makes the arena's write(2) fail as a full /dev/shm would.
    out = run_child(f"""
import resource, signal
import numpy as np
from sluice.store.object_store import ObjectStore
from sluice.store.serialization import serialize
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (6 << 20, resource.RLIM_INFINITY))
with ObjectStore({session!r}, 32 << 20, {str(tmp_path)!r}, arena_bytes=8 << 20) as store:
    name = store.put(1, serialize(np.arange(600_000)))  # 4.8 MB: the arena's size class
    assert (store.get(1) == np.arange(600_000)).all()
    print(name, store.pooled_bytes, {f"sluice-{session}-s0"!r} in store.retired)
""")
    assert out.split() == [f"sluice-{session}-s1", "0", "True"]


@given(
    sizes=st.lists(st.integers(0, 6 * MB), min_size=1, max_size=6),
    capacity_mb=st.integers(4, 24),
    frees=st.lists(st.integers(0, 5), max_size=6),
)
@settings(
    max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_with_an_arena_every_object_survives_and_capacity_holds(
    tmp_path: Path, sizes: list[int], capacity_mb: int, frees: list[int]
) -> None:
    session = new_session_id()
    capacity = capacity_mb * MB
    with ObjectStore(session, capacity_bytes=capacity, spill_dir=tmp_path / session,
                     arena_bytes=capacity // 4) as store:
        for object_id, size in enumerate(sizes):
            store.put(object_id, serialize(blob(object_id, size)))
            assert store.used_bytes + store.pooled_bytes <= capacity
            for freed in frees:
                if freed == object_id:
                    slot = store.free(freed)
                    if slot is not None:
                        store.release_slot(slot)
        for object_id, size in enumerate(sizes):
            if store.contains(object_id):
                np.testing.assert_array_equal(store.get(object_id), blob(object_id, size))
    assert session_files(session) == []


def test_the_arena_is_preferred_to_a_smaller_free_slot_that_fits(arena_store: ObjectStore) -> None:
    arena = put_value(arena_store, 1, blob(1, 3 * MB))
    other = put_value(arena_store, 2, blob(2, 3 * MB))  # the arena is taken: a new slot
    assert other != arena and os.path.getsize(segment_path(other)) < 4 * MB
    for object_id in (1, 2):
        arena_store.release_slot(arena_store.free(object_id))
    assert put_value(arena_store, 3, blob(3, 3 * MB)) == arena  # not the best fit by size
    np.testing.assert_array_equal(arena_store.get(3), blob(3, 3 * MB))


def test_segments_workers_write_evict_the_free_arena_before_anything_spills(
    session: str, tmp_path: Path,
) -> None:
    with ObjectStore(session, capacity_bytes=12 * MB, spill_dir=tmp_path, arena_bytes=4 * MB) as store:
        for object_id in (1, 2):  # as workers do: write the segment, then the store adopts it
            size = write_segment(segment_name(session, object_id), serialize(blob(object_id, 5 * MB)))
            store.adopt(object_id, size)
        assert store.pooled_bytes == 0 and store.num_spilled == 0
        assert arena_path(store) not in session_files(session)
        assert sum(os.path.getsize(p) for p in session_files(session)) <= 12 * MB
