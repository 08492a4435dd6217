"""Tests of sluice.store.shm on the real /dev/shm."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from sluice.exceptions import ObjectLostError
from sluice.store.serialization import serialize, to_bytes
from sluice.store.shm import (
    SHM_DIR,
    SegmentReader,
    cleanup_session,
    cleanup_stale_sessions,
    create_segment,
    new_session_id,
    segment_name,
    segment_path,
    unlink_segment,
    write_segment,
)
from tests.store.helpers import address_range, data_address, run_child, session_files


def test_names_carry_the_session_and_the_hex_id() -> None:
    assert segment_name("12-ab", 255) == "sluice-12-ab-ff"
    assert segment_path("sluice-12-ab-ff") == os.path.join(SHM_DIR, "sluice-12-ab-ff")


def test_session_ids_start_with_the_pid_and_differ() -> None:
    first, second = new_session_id(), new_session_id()
    assert re.fullmatch(rf"{os.getpid()}-[0-9a-f]+", first)
    assert first != second


def test_create_segment_maps_a_writable_file_of_the_size(session: str) -> None:
    name = segment_name(session, 1)
    mapping = create_segment(name, 1000)
    mapping[:5] = b"hello"
    mapping.close()
    with open(segment_path(name), "rb") as file:
        data = file.read()
    assert len(data) == 1000 and data[:5] == b"hello"


def test_create_segment_of_size_zero(session: str) -> None:
    mapping = create_segment(segment_name(session, 2), 0)
    assert len(mapping) >= 1
    mapping.close()
    assert os.path.getsize(segment_path(segment_name(session, 2))) == 0


def test_create_segment_refuses_an_existing_name(session: str) -> None:
    create_segment(segment_name(session, 3), 10).close()
    with pytest.raises(FileExistsError):
        create_segment(segment_name(session, 3), 10)


def test_write_segment_then_read_zero_copy(session: str) -> None:
    array = np.arange(10_000, dtype=np.float64)
    obj = serialize({"a": array, "n": 7})
    name = segment_name(session, 4)
    assert write_segment(name, obj) == obj.nbytes == os.path.getsize(segment_path(name))
    reader = SegmentReader()
    assert bytes(reader.view(name)) == to_bytes(obj)
    value = reader.read(name)
    start, end = address_range(reader.view(name))
    back = value["a"]
    np.testing.assert_array_equal(back, array)
    assert value["n"] == 7
    assert start <= data_address(back) < end
    assert data_address(back) % 64 == 0  # mappings are page aligned, buffers 64-aligned
    assert back.flags.writeable is False
    with pytest.raises(ValueError, match="read-only"):
        back[0] = 1.0


def test_arrow_table_reads_zero_copy_from_a_segment(session: str) -> None:
    table = pa.table({"x": np.arange(5000, dtype=np.int64), "s": ["a", "b"] * 2500})
    name = segment_name(session, 12)
    write_segment(name, serialize(table))
    reader = SegmentReader()
    back = reader.read(name)
    assert back.equals(table)
    start, end = address_range(reader.view(name))
    address = back.column("x").chunk(0).buffers()[1].address
    assert start <= address < end and address % 64 == 0


def test_reader_caches_one_mapping_per_segment(session: str) -> None:
    name = segment_name(session, 5)
    write_segment(name, serialize("x"))
    reader = SegmentReader()
    assert reader.read(name) == "x" and reader.read(name) == "x"
    assert name in reader and len(reader) == 1
    reader.drop(name)
    assert name not in reader
    reader.drop(name)  # dropping twice is fine


def test_populated_mappings_read_the_same(session: str) -> None:
    name = segment_name(session, 6)
    write_segment(name, serialize(np.arange(100)))
    np.testing.assert_array_equal(SegmentReader(populate=True).read(name), np.arange(100))


def test_views_outlive_drop_and_unlink(session: str) -> None:
    name = segment_name(session, 7)
    write_segment(name, serialize(np.arange(1000)))
    reader = SegmentReader()
    array = reader.read(name)
    reader.drop(name)  # exported: the mapping cannot close, and must not raise
    unlink_segment(name)  # Linux keeps the pages while they are mapped
    gc.collect()
    assert not os.path.exists(segment_path(name))
    np.testing.assert_array_equal(array, np.arange(1000))


def test_reading_a_missing_segment_raises_object_lost(session: str) -> None:
    name = segment_name(session, 8)
    with pytest.raises(ObjectLostError, match=rf"segment '{name}' does not exist in /dev/shm"):
        SegmentReader().read(name)


def test_unlink_ignores_missing_segments(session: str) -> None:
    unlink_segment(segment_name(session, 9))


def test_failed_write_leaves_no_file(session: str) -> None:
    class Broken:
        nbytes = 10

    name = segment_name(session, 10)
    with pytest.raises(AttributeError):
        write_segment(name, Broken())  # type: ignore[arg-type]
    assert not os.path.exists(segment_path(name))


def test_cleanup_session_removes_only_that_session(session: str) -> None:
    longer = session + "0"  # a session whose id has ours as a prefix
    for object_id in range(3):
        write_segment(segment_name(session, object_id), serialize(object_id))
    write_segment(segment_name(longer, 1), serialize(1))
    try:
        assert cleanup_session(session) == 3
        assert session_files(session) == []
        assert len(session_files(longer)) == 1
    finally:
        cleanup_session(longer)


def test_cleanup_stale_sessions_removes_dead_drivers_only(session: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    dead_session = f"{child.pid}-dead"
    write_segment(segment_name(dead_session, 1), serialize(1))
    write_segment(segment_name(dead_session, 2), serialize(2))
    write_segment(segment_name(session, 1), serialize(1))  # ours: alive
    try:
        assert cleanup_stale_sessions() >= 2
        assert session_files(dead_session) == []
        assert len(session_files(session)) == 1
    finally:
        cleanup_session(dead_session)


def test_a_child_process_reads_a_segment_the_parent_wrote(session: str) -> None:
    name = segment_name(session, 11)
    write_segment(name, serialize({"x": np.arange(1000, dtype=np.int64), "tag": "parent"}))
    out = run_child(
        "from sluice.store.shm import SegmentReader\n"
        f"value = SegmentReader().read({name!r})\n"
        "print(value['tag'], int(value['x'].sum()), value['x'].flags.writeable)\n"
    )
    assert out.split() == ["parent", str(sum(range(1000))), "False"]
