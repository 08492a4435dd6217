"""The driver's object store: shared-memory segments under a capacity, spilling to disk.

Every object lives either *local* (a segment in /dev/shm, mappable by any process
of the session) or *spilled* (a byte-identical copy of that segment in the spill
directory). When the local bytes exceed the capacity, the least recently used
unpinned objects are spilled; :meth:`ObjectStore.ensure_local` brings one back.

The store is thread-compatible, not thread-safe: the caller serializes calls with
its own lock. It starts no processes, and one thread at most: its arena's, which
touches nothing but the arena (see :mod:`.arena`).

A process that already mapped a segment keeps a valid view after the store
spills or frees it (Linux keeps unlinked pages until the last unmap); a process
that has yet to open it must be protected with :meth:`ObjectStore.pin`.

Slots: writing 200 MB into a fresh tmpfs file costs ~100 ms of page faults, and
every reader faults the pages in again; copying into memory that is already
mapped costs ~18 ms. So large ``put`` values go into *slots*, segments named
``sluice-{session}-s{n}`` that outlive their object: when the object is freed,
:meth:`ObjectStore.free` hands the slot name back, the caller makes sure no
process still holds a view of it (readers keep their mappings, and say when
their views are gone), then :meth:`ObjectStore.release_slot` puts it in the
free pool, and the next ``put`` of a similar size overwrites it in place. A slot
name never changes content while anyone can read it, so per-name mapping caches
stay correct. Segments that leave the store for good are listed in
``retired`` for the caller to tell readers to unmap.

Arena: with ``arena_bytes``, slot ``sluice-{session}-s0`` is made at start with its
pages faulted in by a background thread (:class:`~sluice.store.arena.Arena`), and
enters the pool of free slots at once (its bytes count as pooled). The store keeps
a writable, populated mapping of it for the slot's life, so a put into it is a
memory copy (~17 ms for 200 MB) instead of ``write(2)`` (~40 ms, or ~60 ms into a
new file). Only arena slots are kept mapped here: the driver's resident set grows
by the arena's size, never by later slots.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import Any

from sluice.exceptions import InternalError, ObjectLostError, OutOfDiskError
from sluice.store.arena import Arena
from sluice.store.serialization import SerializedObject, write_to
from sluice.store.shm import (
    RECYCLING_SUPPORTED,
    SegmentReader,
    cleanup_session,
    overwrite_segment,
    segment_name,
    segment_path,
    unlink_segment,
    write_segment,
)

__all__ = ["ObjectStore"]

POOL_MIN_BYTES = 1 << 20
"""Objects at least this large go into recyclable slots (smaller ones: plain segments)."""

POOL_MAX_BYTES = 2 << 30
"""The most bytes of free slots kept for reuse (and half the capacity at most)."""


class ObjectStore:
    """Objects of one session in shared memory, at most ``capacity_bytes`` of them local.

    The capacity is soft: when every local object is pinned, adding or restoring
    one overshoots it rather than failing. ``arena_bytes`` (0: none) makes a slot of
    that size ahead of the first put, faulted in by a background thread (module
    docstring); it may be at most half the capacity, the most the pool keeps.
    """

    def __init__(self, session: str, capacity_bytes: int, spill_dir: str | Path,
                 arena_bytes: int = 0) -> None:
        if capacity_bytes <= 0:
            raise ValueError(
                f"capacity_bytes={capacity_bytes}; the object store needs a positive "
                f"capacity (e.g. 2**30 for 1 GiB)"
            )
        if arena_bytes < 0 or arena_bytes > min(capacity_bytes // 2, POOL_MAX_BYTES):
            raise ValueError(
                f"arena_bytes={arena_bytes} with capacity_bytes={capacity_bytes}; the arena "
                f"must be between 0 and half the capacity (at most {POOL_MAX_BYTES}): lower "
                f"SLUICE_STORE_ARENA_BYTES or raise the object store memory"
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
        # object id -> slot name, for objects stored in recyclable slots.
        self._slot_of: dict[int, str] = {}
        # Free slots, oldest first: name -> size. Invariant: _pooled == sum of sizes.
        self._pool: OrderedDict[str, int] = OrderedDict()
        self._pooled = 0
        self._pool_cap = min(capacity_bytes // 2, POOL_MAX_BYTES)  # evicted first when room is needed
        # Slots freed but not yet released (readers may hold views): name -> size.
        self._releasing: dict[str, int] = {}
        # Slots whose readers are done but this process still holds views of them.
        self._driver_held: dict[str, int] = {}
        self._slot_ids = itertools.count(1)
        self.retired: list[str] = []
        """Names of segments removed for good; readers should drop their mappings."""
        # Slot name -> this process's writable mapping of it, page tables populated:
        # arena slots only. Invariant: keys are pooled, releasing or holding an object.
        self._writable: dict[str, mmap.mmap] = {}
        # The arena while its pages fault in; its slot is in the pool meanwhile.
        self._arena: Arena | None = None
        self._arena_name = f"sluice-{session}-s0"
        if arena_bytes >= POOL_MIN_BYTES and RECYCLING_SUPPORTED:
            self._arena = Arena(segment_path(self._arena_name), arena_bytes)
            self._pool[self._arena_name] = arena_bytes
            self._pooled += arena_bytes

    # -- adding objects -------------------------------------------------------------

    def put(self, object_id: int, obj: SerializedObject) -> str:
        """Store ``obj`` as ``object_id`` in a new segment and return the segment's name.

        Room is made first (spilling others), so /dev/shm holds at most the capacity
        plus the pinned overshoot; the new object itself is spilled at once only if
        every other local object is pinned.
        """
        self._check_new(object_id)
        self._make_room(obj.nbytes)
        if RECYCLING_SUPPORTED and obj.nbytes >= POOL_MIN_BYTES:
            self._recheck_driver_held()
            name, size = self._fill_slot(obj)
            self._slot_of[object_id] = name
        else:
            name = segment_name(self._session, object_id)
            size = write_segment(name, obj)
        self._add_local(object_id, size)
        return name

    def _fill_slot(self, obj: SerializedObject) -> tuple[str, int]:
        """Write ``obj`` into a free slot of a close size, or a new slot.

        Among the slots that fit, the arena comes first (a copy without page
        faults, at twice the speed of ``write(2)``), then the smallest.
        """
        need = obj.nbytes
        fits = [name for name, size in self._pool.items() if need <= size <= 2 * need]
        best = min(fits, default=None, key=lambda name: (not self._is_arena(name), self._pool[name]))
        if best is None:
            name = f"sluice-{self._session}-s{next(self._slot_ids)}"
            return name, write_segment(name, obj)
        size = self._pool.pop(best)
        self._pooled -= size
        if self._arena is not None and best == self._arena_name:
            if not self._take_arena(self._arena):  # it failed: the slot is gone
                return self._fill_slot(obj)
        mapping = self._writable.get(best)
        if mapping is None:
            overwrite_segment(best, obj)
        else:
            with memoryview(mapping) as view:
                write_to(obj, view)
        return best, size

    def _is_arena(self, name: str) -> bool:
        return name in self._writable or (self._arena is not None and name == self._arena_name)

    def _take_arena(self, arena: Arena) -> bool:
        """Wait for the arena's pages and keep its mapping; False (and the slot
        retired) if faulting in failed."""
        mapping = arena.take()
        self._arena = None
        if mapping is None:
            self._retire_slot(self._arena_name)
            return False
        self._writable[self._arena_name] = mapping
        return True

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
        # Free slots (the arena among them) go before any object spills: a segment
        # a worker wrote arrives here unannounced, with no _make_room before it.
        while self._pool and self._used + self._pooled > self._capacity:
            self._evict_slot()
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
        name = self._slot_of.get(object_id) or segment_name(self._session, object_id)
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

    def free(self, object_id: int) -> str | None:
        """Delete ``object_id``'s segment or spill file; an unknown id is a no-op.

        Returns the slot name when the object lived in a recyclable slot: the
        caller passes it to :meth:`release_slot` once no other process holds a
        view of it (or to :meth:`discard_slot`). Otherwise returns None.
        """
        size = self._sizes.pop(object_id, None)
        if size is None:
            return None
        self._pins.pop(object_id, None)
        slot = self._slot_of.pop(object_id, None)
        name = slot or segment_name(self._session, object_id)
        if object_id in self._local:
            del self._local[object_id]
            self._used -= size
            if slot is not None:
                self._releasing[slot] = size
                return slot
            self._reader.drop(name)
            unlink_segment(name)
        else:
            self._spilled -= size
            _unlink_quietly(self._spill_dir / segment_name(self._session, object_id))
        self.retired.append(name)
        return None

    def release_slot(self, name: str) -> None:
        """Other processes hold no view of slot ``name``: pool it for reuse (or drop it)."""
        size = self._releasing.pop(name, None)
        if size is None or self._closed:
            return
        if self._reader.has_views(name):
            self._driver_held[name] = size  # a value this process read is still alive
            return
        self._pool[name] = size
        self._pooled += size
        while self._pooled > self._pool_cap and self._pool:
            self._evict_slot()

    def slot_coming(self, nbytes: int) -> bool:
        """Whether a slot that would fit ``nbytes`` is only waiting for readers to release it."""
        return RECYCLING_SUPPORTED and nbytes >= POOL_MIN_BYTES and any(
            nbytes <= size <= 2 * nbytes for size in self._releasing.values())

    def discard_slot(self, name: str) -> None:
        """Remove slot ``name`` for good (its readers could not be asked)."""
        self._releasing.pop(name, None)
        self._retire_slot(name)

    def _recheck_driver_held(self) -> None:
        for name in [n for n in self._driver_held if not self._reader.has_views(n)]:
            self._releasing[name] = self._driver_held.pop(name)
            self.release_slot(name)

    def _evict_slot(self) -> None:
        name, size = self._pool.popitem(last=False)
        self._pooled -= size
        self._retire_slot(name)

    def _retire_slot(self, name: str) -> None:
        if self._arena is not None and name == self._arena_name:
            self._arena.close()
            self._arena = None
        mapping = self._writable.pop(name, None)
        if mapping is not None:
            mapping.close()
        self._reader.drop(name)
        unlink_segment(name)
        self.retired.append(name)

    def wait_for_arena(self) -> None:
        """Block until the arena's pages are in (at once if there is none).

        The runtime calls it at the end of start-up, once the workers are spawned:
        the arena faults in while they start, and the driver's resident set (which
        counts the arena's pages) is settled when ``init`` returns.
        """
        if self._arena is not None:
            self._arena.wait()

    @property
    def pooled_bytes(self) -> int:
        """Bytes of free slots kept for reuse."""
        return self._pooled

    def close(self) -> None:
        """Delete every object, every segment of the session, and a spill dir we made.

        Segments that workers wrote but nobody adopted go too. Closing twice is fine.
        """
        if self._closed:
            return
        for object_id in list(self._sizes):
            self.free(object_id)
        if self._arena is not None:
            self._arena.close()
            self._arena = None
        for mapping in self._writable.values():
            mapping.close()
        self._writable.clear()
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
        while self._pool and self._used + self._pooled + incoming > self._capacity:
            self._evict_slot()
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
        slot = self._slot_of.pop(object_id, None)
        target = self._spill_dir / name
        try:
            _copy_file(segment_path(slot or name), target)
        except OSError as exc:
            raise OutOfDiskError(
                exc.errno,
                f"cannot spill object {object_id:x} to {target}: {exc.strerror}; free space "
                f"in the spill directory or raise the object store capacity",
            ) from exc
        if slot is not None:  # the slot leaves with it; it comes back as a plain segment
            self._retire_slot(slot)
        else:
            self._reader.drop(name)
            unlink_segment(name)
            self.retired.append(name)
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
