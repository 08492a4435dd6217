"""A reserve of shared memory whose pages exist before the first large ``put`` needs them.

Measured on a 2-core VM, storing 200 MB costs about 60 ms into a new /dev/shm file
(the kernel allocates and zeroes each page as ``write(2)`` reaches it), 40 ms into a
recycled slot through ``write(2)`` (a page-cache lookup per 4 KiB page), and 17 ms
as a plain memory copy into a mapping whose page tables are already filled.

An :class:`Arena` is one recyclable slot made ahead of time: a background thread
gives the file all its pages (``posix_fallocate``), maps it writable and faults
every page in (:func:`populate_for_writing`). The store keeps that mapping for the
slot's whole life, so every ``put`` into the slot, the first included, is a memory
copy without page faults.

What it costs, per store: ``size`` bytes of /dev/shm from start to shutdown, counted
against the store's capacity as a free slot (spilling evicts it first when room is
needed); about 85 ms of one core per 256 MiB at start, while the workers start;
~20 ms more at shutdown to free the pages; and the driver's resident set includes
the slot's pages from start (they are the shared memory itself, not a second copy).
``SLUICE_STORE_ARENA_BYTES`` sets the size; ``0`` turns the arena off.
"""

from __future__ import annotations

import mmap
import os
import threading

__all__ = [
    "ARENA_ENV",
    "MAX_DEFAULT_ARENA_BYTES",
    "Arena",
    "default_arena_bytes",
    "populate_for_writing",
    "touch_pages",
]

ARENA_ENV = "SLUICE_STORE_ARENA_BYTES"
MAX_DEFAULT_ARENA_BYTES = 256 << 20
"""The default arena is a quarter of the store's capacity, at most this."""

# Bytes populated per madvise call: close() waits for one chunk at most.
_CHUNK = 32 << 20
_MADV_POPULATE_WRITE = 23  # Linux 5.14+


def populate_for_writing(mapping: mmap.mmap, start: int = 0, length: int | None = None) -> None:
    """Fault in ``length`` bytes of the shared ``mapping`` from ``start``, writable.

    ``madvise(MADV_POPULATE_WRITE)`` is called through ctypes, which releases the
    GIL (CPython's ``mmap.madvise`` holds it). Before Linux 5.14 a zero byte is
    written to each page instead, holding the GIL. The range must be backed by the
    file (e.g. allocated with ``posix_fallocate``), or the kernel raises SIGBUS.
    """
    import ctypes

    end = len(mapping) if length is None else start + length
    anchor = ctypes.c_char.from_buffer(mapping, start)
    try:
        address = ctypes.addressof(anchor)
    finally:
        del anchor  # the buffer export must end before the mapping can close
    if _libc_madvise(address, end - start, _MADV_POPULATE_WRITE) != 0:
        touch_pages(mapping, start, end)


def touch_pages(mapping: mmap.mmap, start: int, end: int) -> None:
    """Write a zero to the first byte of each page of ``mapping[start:end]``
    (``start`` page-aligned): the portable way to fault the range in, writable."""
    with memoryview(mapping) as view:
        pages = view[start:end:mmap.PAGESIZE]
        pages[:] = bytes(len(pages))


def _libc_madvise(address: int, length: int, advice: int) -> int:
    import ctypes

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return -1
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    result: int = madvise(address, length, advice)
    return result


def default_arena_bytes(capacity_bytes: int) -> int:
    """The arena size for a store of ``capacity_bytes``: ``$SLUICE_STORE_ARENA_BYTES``
    when set, else a quarter of the capacity, at most 256 MiB."""
    text = os.environ.get(ARENA_ENV)
    if text is None or not text.strip():
        return min(capacity_bytes // 4, MAX_DEFAULT_ARENA_BYTES)
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{ARENA_ENV}={text!r} is not a number of bytes; set it to e.g. {MAX_DEFAULT_ARENA_BYTES} "
            f"for 256 MiB of pre-faulted shared memory, or 0 to turn the arena off"
        )
    return value


class Arena:
    """The segment at ``path`` (``size`` bytes), being faulted in by a background thread.

    The file is created here, so its name is claimed at once and session cleanup
    removes it; its pages come in the background. :meth:`take` waits for them and
    hands over a writable mapping with populated page tables; :meth:`close` stops
    the thread early. The file itself is the caller's to unlink.
    """

    def __init__(self, path: str, size: int) -> None:
        if size <= 0:
            raise ValueError(f"Arena of size={size}; an arena needs a positive size in bytes")
        self.path = path
        self.size = size
        self._stop = threading.Event()
        self._mapping: mmap.mmap | None = None
        self.error: OSError | None = None
        """Why faulting in failed (e.g. ENOSPC: /dev/shm is full), else None."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._thread = threading.Thread(
            target=self._fault_in, args=(fd,), name="sluice-store-arena", daemon=True
        )
        self._thread.start()

    def _fault_in(self, fd: int) -> None:
        try:
            os.posix_fallocate(fd, 0, self.size)  # every page now, or ENOSPC now
            mapping = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED)
        except OSError as exc:
            self.error = exc
            return
        finally:
            os.close(fd)
        for start in range(0, self.size, _CHUNK):
            if self._stop.is_set():
                mapping.close()
                return
            populate_for_writing(mapping, start, min(_CHUNK, self.size - start))
        self._mapping = mapping

    @property
    def ready(self) -> bool:
        """Whether the pages are in (or faulting in failed); :meth:`take` will not wait."""
        return not self._thread.is_alive()

    def wait(self) -> None:
        """Block until the pages are in (or faulting in failed, or was stopped)."""
        self._thread.join()

    def take(self) -> mmap.mmap | None:
        """Wait for the pages; return the writable mapping (now the caller's to close),
        or None if faulting in failed or the arena was closed. Only the first call
        gets the mapping."""
        self._thread.join()
        mapping, self._mapping = self._mapping, None
        return mapping

    def close(self) -> None:
        """Stop faulting in (at most one chunk more) and unmap. The file stays."""
        self._stop.set()
        self._thread.join()
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None
