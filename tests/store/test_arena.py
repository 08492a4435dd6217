"""Tests of sluice.store.arena: a slot of shared memory faulted in ahead of use."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from sluice.store.arena import (
    ARENA_ENV,
    MAX_DEFAULT_ARENA_BYTES,
    Arena,
    default_arena_bytes,
    populate_for_writing,
    touch_pages,
)
from sluice.store.shm import segment_path
from tests.store.helpers import resident_bytes, run_child

MB = 1 << 20


@pytest.fixture
def path(session: str) -> str:
    return segment_path(f"sluice-{session}-arena-test")


def test_take_hands_over_a_writable_mapping_with_every_page_resident(path: str) -> None:
    arena = Arena(path, 4 * MB)
    mapping = arena.take()
    assert mapping is not None and len(mapping) == 4 * MB
    try:
        assert os.path.getsize(path) == 4 * MB
        assert resident_bytes(mapping) == 4 * MB  # the page tables were filled up front
        assert mapping[:16] == bytes(16)
        mapping[: 3] = b"abc"
        with open(path, "rb") as f:
            assert f.read(3) == b"abc"  # shared: what the store writes, readers see
        assert arena.take() is None  # handed over once
    finally:
        mapping.close()
    arena.close()  # after take: nothing left to unmap


def test_close_stops_the_thread_and_the_file_is_the_callers(path: str) -> None:
    arena = Arena(path, 64 * MB)
    arena.close()
    assert arena.ready and arena.take() is None
    assert os.path.exists(path)  # the store unlinks it, as any slot
    arena.close()  # twice is fine


def test_the_file_name_is_claimed_at_once(path: str) -> None:
    arena = Arena(path, MB)
    try:
        with pytest.raises(FileExistsError):
            Arena(path, MB)
    finally:
        arena.close()


def test_a_size_that_is_not_positive_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match=r"size=0; an arena needs a positive size"):
        Arena(path, 0)
    assert not os.path.exists(path)


def test_a_failed_fault_in_reports_its_error_and_gives_no_mapping(session: str) -> None:
    # A file size limit makes write(2) fail as a full /dev/shm would (ENOSPC).
    out = run_child(f"""
import resource, signal
from sluice.store.arena import Arena
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
arena = Arena("/dev/shm/sluice-{session}-arena-test", 4 << 20)
print(arena.take(), type(arena.error).__name__, arena.error.errno)
""")
    mapping, error, errno_value = out.split()
    assert mapping == "None" and error in ("OSError", "PermissionError")
    assert int(errno_value) == 27  # EFBIG


def shared_mapping(path: str, size: int) -> mmap.mmap:
    """A writable shared mapping of a new file of ``size`` allocated bytes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def test_populate_for_writing_makes_the_range_resident(path: str) -> None:
    mapping = shared_mapping(path, 4 * MB)
    assert resident_bytes(mapping) == 0
    populate_for_writing(mapping, MB, 2 * MB)
    assert resident_bytes(mapping) == 2 * MB
    populate_for_writing(mapping)
    assert resident_bytes(mapping) == 4 * MB
    mapping.close()  # no buffer export was left behind


def test_touch_pages_makes_the_range_resident_without_madvise(path: str) -> None:
    mapping = shared_mapping(path, 4 * MB)
    touch_pages(mapping, MB, 3 * MB)
    assert resident_bytes(mapping) == 2 * MB
    assert mapping[:] == bytes(4 * MB)
    mapping.close()


def test_default_size_is_a_quarter_of_the_capacity_at_most_256_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ARENA_ENV, raising=False)
    assert default_arena_bytes(400 * MB) == 100 * MB
    assert default_arena_bytes(8 << 30) == MAX_DEFAULT_ARENA_BYTES == 256 * MB


def test_the_environment_sets_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARENA_ENV, "0")
    assert default_arena_bytes(8 << 30) == 0
    monkeypatch.setenv(ARENA_ENV, str(3 * MB))
    assert default_arena_bytes(8 << 30) == 3 * MB


@pytest.mark.parametrize("text", ["lots", "-1", "1.5"])
def test_a_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(ARENA_ENV, text)
    with pytest.raises(ValueError, match=rf"SLUICE_STORE_ARENA_BYTES='{text}' is not a number of bytes; .* or 0"):
        default_arena_bytes(8 << 30)


def test_a_written_arena_reads_back_as_numpy(path: str) -> None:
    arena = Arena(path, MB)
    mapping = arena.take()
    assert mapping is not None
    with memoryview(mapping) as view:
        view[:8 * 4] = np.arange(4, dtype=np.float64).tobytes()
    with open(path, "rb") as f:
        np.testing.assert_array_equal(np.frombuffer(f.read(32)), np.arange(4.0))
    mapping.close()
