"""The driver's object store: shared-memory segments under a capacity, spilling to disk.

Every object lives either *local* (a segment in /dev/shm, mappable by any process
of the session) or *spilled* (a byte-identical copy of that segment in the spill
directory). When the local bytes exceed the capacity, the least recently used
unpinned objects are spilled; :meth:`ObjectStore.ensure_local` brings one back.

The store is thread-compatible, not thread-safe: the caller serializes calls with
its own lock. It starts no threads and no processes.

A process that already mapped a segment keeps a valid view after the store
spills or frees it (Linux keeps unlinked pages until the last unmap); a process
that has yet to open it must be protected with :meth:`ObjectStore.pin`.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import Any

from sluice.exceptions import InternalError, ObjectLostError
from sluice.store.serialization import SerializedObject
from sluice.store.shm import (
    SegmentReader,
    cleanup_session,
    segment_name,
    segment_path,
    unlink_segment,
    write_segment,
)

__all__ = ["ObjectStore"]


class ObjectStore:
    """Objects of one session in shared memory, at most ``capacity_bytes`` of them local.

    The capacity is soft: when every local object is pinned, adding or restoring
    one overshoots it rather than failing.
    """

    def __init__(self, session: str, capacity_bytes: int, spill_dir: str | Path) -> None:
        if capacity_bytes <= 0:
            raise ValueError(
                f"capacity_bytes={capacity_bytes}; the object store needs a positive "
                f"capacity (e.g. 2**30 for 1 GiB)"
            )
        self._session = session
        self._capacity = capacity_bytes
        self._spill_dir = Path(spill_dir)
        self._created_spill_dir = not self._spill_dir.exists()
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        self._reader = SegmentReader()
        # Every object held, local or spilled -> its size in bytes.
        self._sizes: dict[int, int] = {}
        # The local objects, least recently used first. Invariant: a subset of
        # _sizes' keys; the rest of _sizes is spilled.
        self._local: OrderedDict[int, None] = OrderedDict()
        # object id -> pin count; only counts above zero are stored.
        self._pins: dict[int, int] = {}
        # Invariant: _used == sum of local sizes; _spilled == sum of spilled sizes.
        self._used = 0
        self._spilled = 0
        self._num_spilled = 0
        self._num_restored = 0
        self._closed = False

    # -- adding objects -------------------------------------------------------------

    def put(self, object_id: int, obj: SerializedObject) -> str:
        """Store ``obj`` as ``object_id`` in a new segment and return the segment's name.

        Room is made first (spilling others), so /dev/shm holds at most the capacity
        plus the pinned overshoot; the new object itself is spilled at once only if
        every other local object is pinned.
        """
        self._check_new(object_id)
        self._make_room(obj.nbytes)
        name = segment_name(self._session, object_id)
        size = write_segment(name, obj)
        self._add_local(object_id, size)
        return name

    def adopt(self, object_id: int, size: int) -> None:
        """Account the segment of ``object_id`` that a worker process already wrote."""
        self._check_new(object_id)
        name = segment_name(self._session, object_id)
        try:
            actual = os.stat(segment_path(name)).st_size
        except FileNotFoundError:
            raise ObjectLostError(
                f"cannot adopt object {object_id:x}: its segment {segment_path(name)} does not "
                f"exist; the worker must write it with write_segment before reporting it"
            ) from None
        if actual != size:
            raise InternalError(
                f"adopt(object {object_id:x}, size={size}) but segment {name!r} has {actual} "
                f"bytes; report the size write_segment returned"
            )
        self._add_local(object_id, size)

    def _check_new(self, object_id: int) -> None:
        self._check_open()
        if object_id in self._sizes:
            raise InternalError(
                f"object {object_id:x} is already in the store; object ids must be unique "
                f"(free it before reusing the id)"
            )

    def _add_local(self, object_id: int, size: int) -> None:
        self._sizes[object_id] = size
        self._local[object_id] = None
        self._used += size
        while self._used > self._capacity:
            victim = self._least_recently_used(exclude=object_id)
            if victim is None and object_id in self._local and object_id not in self._pins:
                victim = object_id  # everything else is pinned: the newcomer goes
            if victim is None:
                break  # all pinned: overshoot
            self._spill(victim)

    # -- reading objects ------------------------------------------------------------

    def ensure_local(self, object_id: int) -> str:
        """Make ``object_id`` local (restoring it if spilled) and most recently used.

        Returns its segment name. Restoring may spill other unpinned objects.
        """
        self._check_open()
        name = segment_name(self._session, object_id)
        if object_id in self._local:
            self._local.move_to_end(object_id)
            return name
        size = self._sizes.get(object_id)
        if size is None:
            raise self._unknown(object_id, "read")
        self._make_room(size)
        self._restore(object_id, name)
        self._local[object_id] = None
        self._used += size
        self._spilled -= size
        self._num_restored += 1
        return name

    def get(self, object_id: int) -> Any:
        """The value of ``object_id``, zero-copy over its segment (arrays are read-only)."""
        return self._reader.read(self.ensure_local(object_id))

    # -- pins and freeing -----------------------------------------------------------

    def pin(self, object_id: int) -> None:
        """Keep ``object_id`` from being spilled until a matching :meth:`unpin`.

        Pins count: two pins need two unpins. A spilled object stays spilled until
        :meth:`ensure_local`, which a pin then protects.
        """
        if object_id not in self._sizes:
            raise self._unknown(object_id, "pin")
        self._pins[object_id] = self._pins.get(object_id, 0) + 1

    def unpin(self, object_id: int) -> None:
        """Undo one :meth:`pin` of ``object_id``."""
        count = self._pins.get(object_id, 0)
        if count == 0:
            raise InternalError(
                f"unpin of object {object_id:x}, which is not pinned; every unpin must "
                f"match an earlier pin"
            )
        if count == 1:
            del self._pins[object_id]
        else:
            self._pins[object_id] = count - 1

    def free(self, object_id: int) -> None:
        """Delete ``object_id``'s segment or spill file; an unknown id is a no-op."""
        size = self._sizes.pop(object_id, None)
        if size is None:
            return
        self._pins.pop(object_id, None)
        name = segment_name(self._session, object_id)
        self._reader.drop(name)
        if object_id in self._local:
            del self._local[object_id]
            self._used -= size
            unlink_segment(name)
        else:
            self._spilled -= size
            _unlink_quietly(self._spill_dir / name)

    def close(self) -> None:
        """Delete every object, every segment of the session, and a spill dir we made.

        Segments that workers wrote but nobody adopted go too. Closing twice is fine.
        """
        if self._closed:
            return
        for object_id in list(self._sizes):
            self.free(object_id)
        self._reader.clear()
        cleanup_session(self._session)
        if self._created_spill_dir:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- introspection --------------------------------------------------------------

    def contains(self, object_id: int) -> bool:
        """Whether the store holds ``object_id`` (local or spilled)."""
        return object_id in self._sizes

    def is_spilled(self, object_id: int) -> bool:
        """Whether ``object_id`` is held, but on disk rather than in shared memory."""
        return object_id in self._sizes and object_id not in self._local

    def size_of(self, object_id: int) -> int:
        """The size in bytes of ``object_id``'s flat layout."""
        size = self._sizes.get(object_id)
        if size is None:
            raise self._unknown(object_id, "size")
        return size

    @property
    def session(self) -> str:
        """The session whose segments this store names."""
        return self._session

    @property
    def capacity_bytes(self) -> int:
        """How many bytes of objects may be local before spilling starts."""
        return self._capacity

    @property
    def used_bytes(self) -> int:
        """Bytes of the objects now in shared memory."""
        return self._used

    @property
    def spilled_bytes(self) -> int:
        """Bytes of the objects now spilled to disk (not a running total)."""
        return self._spilled

    @property
    def num_spilled(self) -> int:
        """How many times an object was spilled, over the store's life."""
        return self._num_spilled

    @property
    def num_restored(self) -> int:
        """How many times a spilled object was brought back, over the store's life."""
        return self._num_restored

    # -- spilling -------------------------------------------------------------------

    def _make_room(self, incoming: int) -> None:
        """Spill unpinned objects until ``incoming`` more bytes fit, or none is left."""
        while self._used + incoming > self._capacity:
            victim = self._least_recently_used(exclude=None)
            if victim is None:
                return
            self._spill(victim)

    def _least_recently_used(self, exclude: int | None) -> int | None:
        for object_id in self._local:
            if object_id != exclude and object_id not in self._pins:
                return object_id
        return None

    def _spill(self, object_id: int) -> None:
        name = segment_name(self._session, object_id)
        target = self._spill_dir / name
        try:
            _copy_file(segment_path(name), target)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot spill object {object_id:x} to {target}: {exc.strerror}; free space "
                f"in the spill directory or raise the object store capacity",
            ) from exc
        self._reader.drop(name)
        unlink_segment(name)
        del self._local[object_id]
        size = self._sizes[object_id]
        self._used -= size
        self._spilled += size
        self._num_spilled += 1

    def _restore(self, object_id: int, name: str) -> None:
        source = self._spill_dir / name
        try:
            _copy_file(source, segment_path(name))
        except FileNotFoundError as exc:
            if exc.filename != str(source):
                raise
            raise ObjectLostError(
                f"object {object_id:x} was spilled to {source}, but that file is gone; "
                f"keep the spill directory for as long as the session runs"
            ) from None
        _unlink_quietly(source)

    def _unknown(self, object_id: int, action: str) -> ObjectLostError:
        return ObjectLostError(
            f"cannot {action} object {object_id:x}: the store does not hold it (it was "
            f"freed, or never stored); keep its ObjectRef alive while the value is needed"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise InternalError(
                f"object store of session {self._session!r} is closed; create a new one"
            )


def _copy_file(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` into a new file ``target`` in the kernel; no partial target is left."""
    with open(source, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            copied = 0
            while copied < size:
                sent = os.sendfile(fd, src.fileno(), copied, size - copied)
                if sent == 0:
                    raise OSError(errno.EIO, f"{source} shrank while being copied to {target}")
                copied += sent
        except BaseException:
            os.unlink(target)
            raise
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
