"""How a store segment travels as an Arrow stream, and how a received one is written.

The two kinds of stream, told apart by the schema metadata key ``sluice.transfer``
(see :mod:`sluice.store.transfer` for who sends them):

* ``arrow``: a segment holding an Arrow table or record batch streams the table
  itself; the receiver lays it out again with ``serialize`` + ``write_segment``.
* ``bytes``: any other segment streams its raw flat layout as record batches of
  one ``uint8`` column, :data:`CHUNK_BYTES` each, cut zero-copy from the mapping;
  the receiver writes the chunks in order, from a second thread so that receiving
  and writing overlap.

A received segment is written under a temporary name and linked to its final
name only when complete, so no reader ever maps a half-written segment.
"""

from __future__ import annotations

import errno
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from sluice.exceptions import ObjectStoreFullError, SluiceError
from sluice.store import serialization
from sluice.store.shm import (
    SHM_DIR,
    segment_name,
    segment_path,
    unlink_segment,
    write_segment,
)

CHUNK_BYTES = 4 << 20
"""Bytes per record batch of a raw-layout stream (measured: 1-16 MiB move alike on loopback)."""
WRITE_AHEAD = 4
"""Received chunks that may wait for the writer thread (bounded memory: 4 x CHUNK_BYTES)."""

TRANSFER_KEY = b"sluice.transfer"  # schema metadata: b"arrow" or b"bytes"
SIZE_KEY = b"sluice.size"  # bytes streams: the layout's total size
MARKER_KEY = b"sluice.arrow"  # arrow streams: b"T" (Table) or b"B" (RecordBatch)
_OUR_KEYS = (TRANSFER_KEY, SIZE_KEY, MARKER_KEY)


class TransferError(SluiceError):
    """A node store failed a transfer for a reason other than a refused token or name."""


def segment_size(name: str) -> int | None:
    try:
        return os.stat(segment_path(name)).st_size
    except FileNotFoundError:
        return None


def bytes_schema(size: int) -> pa.Schema:
    """The schema of a raw-layout stream of ``size`` bytes in all."""
    metadata = {TRANSFER_KEY: b"bytes", SIZE_KEY: str(size).encode()}
    return pa.schema([("bytes", pa.uint8())], metadata=metadata)


def chunk_batches(data: pa.Buffer, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``data`` as uint8 record batches of CHUNK_BYTES each, without copying it."""
    for start in range(0, data.size, CHUNK_BYTES):
        n = min(CHUNK_BYTES, data.size - start)
        array = pa.Array.from_buffers(pa.uint8(), n, [None, data.slice(start, n)])
        yield pa.RecordBatch.from_arrays([array], schema=schema)


def bytes_table(data: pa.Buffer) -> pa.Table:
    """All of ``data`` as a raw-layout stream's table."""
    schema = bytes_schema(data.size)
    return pa.Table.from_batches(list(chunk_batches(data, schema)), schema=schema)


def arrow_table(value: pa.Table | pa.RecordBatch) -> pa.Table:
    """``value`` as a table whose schema metadata marks an arrow stream (user metadata kept)."""
    marker = b"B" if isinstance(value, pa.RecordBatch) else b"T"
    table = pa.Table.from_batches([value]) if marker == b"B" else value
    metadata = dict(table.schema.metadata or {})
    metadata.update({TRANSFER_KEY: b"arrow", MARKER_KEY: marker})
    return table.replace_schema_metadata(metadata)


def read_batches(reader: Any) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is not None:
            yield chunk.data


def stream_kind(schema: pa.Schema) -> tuple[bytes, dict[bytes, bytes]]:
    metadata = dict(schema.metadata or {})
    kind = metadata.get(TRANSFER_KEY)
    if kind not in (b"arrow", b"bytes"):
        raise TransferError(
            f"the stream is not a sluice segment transfer (schema metadata {metadata!r}); "
            f"is the other end a sluice node store of the same version?"
        )
    return kind, metadata


def copy_chunks(reader: Any, size: int, sink: Callable[[memoryview], None]) -> None:
    """Feed the raw layout chunks of ``reader`` to ``sink``; they must add up to ``size``."""
    received = 0
    for batch in read_batches(reader):
        column = batch.column(0)
        data = column.buffers()[1]
        if data is None or len(column) == 0:
            continue
        chunk = memoryview(data)[column.offset : column.offset + len(column)]
        received += chunk.nbytes
        if received > size:
            break
        sink(chunk)
    if received != size:
        carried = "more" if received > size else str(received)
        raise TransferError(
            f"a segment stream announced {size} bytes but carried {carried}; the sender "
            f"failed, was interrupted, or its segment changed; retry the transfer"
        )


def rebuild_arrow(reader: Any, metadata: dict[bytes, bytes]) -> pa.Table | pa.RecordBatch:
    """The table or record batch an arrow stream carries, with its own metadata restored."""
    table = reader.read_all()
    marker = metadata.get(MARKER_KEY)
    user_metadata = {k: v for k, v in metadata.items() if k not in _OUR_KEYS} or None
    table = table.replace_schema_metadata(user_metadata)
    if marker != b"B":
        return table
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def receive_segment(reader: Any, name: str) -> int:
    """Write the segment stream of ``reader`` as the new local segment ``name``."""
    if segment_size(name) is not None:
        raise FileExistsError(
            f"object segment {name} already exists on this node; names are never reused"
        )
    kind, metadata = stream_kind(reader.schema)
    temp = _temp_name()
    try:
        if kind == b"arrow":
            size = write_segment(temp, serialization.serialize(rebuild_arrow(reader, metadata)))
        else:
            size = int(metadata[SIZE_KEY])
            _write_raw(reader, temp, size)
        _publish(temp, name)
    except BaseException:
        unlink_segment(temp)
        raise
    return size


def _temp_name() -> str:
    # Named like a segment of a session of this process, so that if the process dies
    # mid-transfer, shm.cleanup_stale_sessions removes the partial file.
    return segment_name(f"{os.getpid()}-partial", secrets.randbits(64))


def _write_raw(reader: Any, temp: str, size: int) -> None:
    # No posix_fallocate: this process never maps the file, so a full /dev/shm shows
    # up as ENOSPC from write(2), not as SIGBUS, and reserving would zero every page
    # once more before the chunks overwrite it.
    # Receiving a chunk (a socket copy) and writing the one before it (a page-allocating
    # copy into tmpfs) both release the GIL: a writer thread lets them overlap.
    fd = os.open(segment_path(temp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    chunks: queue.Queue = queue.Queue(maxsize=WRITE_AHEAD)
    failure: list[BaseException] = []

    def writer() -> None:
        while (chunk := chunks.get()) is not None:
            if failure:
                continue
            try:
                while chunk.nbytes:
                    chunk = chunk[os.write(fd, chunk) :]
            except BaseException as exc:  # handed to the receiving thread below
                failure.append(exc)

    thread = threading.Thread(target=writer, name="sluice-segment-writer", daemon=True)
    thread.start()

    def write_all(chunk: memoryview) -> None:
        if failure:
            raise failure[0]
        chunks.put(chunk)

    try:
        try:
            copy_chunks(reader, size, write_all)
        finally:
            chunks.put(None)
            thread.join()
        if failure:
            raise failure[0]
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise ObjectStoreFullError(
            errno.ENOSPC,
            f"no room in {SHM_DIR} for a transferred segment of {size} bytes; free objects, "
            f"lower the object store capacity or enlarge {SHM_DIR} (docker: --shm-size)",
        ) from exc
    finally:
        os.close(fd)


def _publish(temp: str, name: str) -> None:
    """Give the complete segment ``temp`` its final ``name``, atomically, never replacing one."""
    try:
        os.link(segment_path(temp), segment_path(name))
    except FileExistsError:
        raise FileExistsError(
            f"object segment {name} already exists on this node; names are never reused"
        ) from None
    finally:
        unlink_segment(temp)
