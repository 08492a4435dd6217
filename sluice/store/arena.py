"""A reserve of shared memory whose pages exist before the first large ``put`` needs them.

Measured on a 2-core VM, storing 200 MB costs about 60 ms into a new /dev/shm file
(the kernel allocates and zeroes each page as ``write(2)`` reaches it), 40 ms into a
recycled slot through ``write(2)`` (a page-cache lookup per 4 KiB page), and 17 ms
as a plain memory copy into a mapping whose page tables are already filled.

An :class:`Arena` is one recyclable slot made ahead of time: a background thread
gives the file all its pages (``write(2)`` of zeros), maps it writable and fills
the page tables (:func:`populate`). The store keeps that mapping for the slot's
whole life, so every ``put`` into the slot, the first included, is a memory copy
without page faults.

What it costs, per store: ``size`` bytes of /dev/shm from start to shutdown, counted
against the store's capacity as a free slot (spilling evicts it first when room is
needed); one core for about 0.1 s per 256 MiB at start, in the background; and the
driver's resident set includes the slot's pages from start (they are the shared
memory itself, not a second copy). ``SLUICE_STORE_ARENA_BYTES`` sets the size;
``0`` turns the arena off.
"""

from __future__ import annotations

import mmap
import os
import threading

__all__ = ["ARENA_ENV", "MAX_DEFAULT_ARENA_BYTES", "Arena", "default_arena_bytes", "populate"]

ARENA_ENV = "SLUICE_STORE_ARENA_BYTES"
MAX_DEFAULT_ARENA_BYTES = 256 << 20
"""The default arena is a quarter of the store's capacity, at most this."""

# Zeros written per system call. close() waits for one chunk at most, and the thread
# takes the GIL back once per chunk (up to 5 ms each while the driver's threads run).
_CHUNK = 32 << 20
_MADV_POPULATE_READ = 22  # Linux 5.14+


def populate(mapping: mmap.mmap) -> None:
    """Fill the page tables of ``mapping`` (a shared mapping of up-to-date pages).

    Populating for reading maps 16 pages per fault, writable in a writable shared
    mapping (no copy-on-write to break): ~12 ms for 200 MB, against ~43 ms for
    write faults, one per page. ``madvise`` is called through ctypes, which releases
    the GIL; CPython's ``mmap`` holds it during ``MAP_POPULATE`` and ``madvise``.
    Before Linux 5.14, reading one byte per page does the same, holding the GIL.
    """
    import ctypes

    anchor = ctypes.c_char.from_buffer(mapping)
    try:
        address = ctypes.addressof(anchor)
        if _libc_madvise(address, len(mapping), _MADV_POPULATE_READ) == 0:
            return
    finally:
        del anchor  # the buffer export must end before the mapping can close
    with memoryview(mapping) as view:
        bytes(view[:: mmap.PAGESIZE])


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
            zeros = memoryview(bytes(min(_CHUNK, self.size)))
            done = 0
            while done < self.size:
                if self._stop.is_set():
                    return
                done += os.pwrite(fd, zeros[: min(_CHUNK, self.size - done)], done)
            mapping = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED)
            if not self._stop.is_set():
                populate(mapping)
            self._mapping = mapping
        except OSError as exc:
            self.error = exc
        finally:
            os.close(fd)

    @property
    def ready(self) -> bool:
        """Whether the pages are in (or faulting in failed); :meth:`take` will not wait."""
        return not self._thread.is_alive()

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
