"""Turn Python values into a flat, self-describing byte layout and back, zero-copy.

Two encodings exist, told apart by :attr:`SerializedObject.kind`:

* ``PICKLE5``: pickle protocol 5 with out-of-band buffers, so a numpy array's data
  is never copied when it is serialized; :func:`deserialize` hands slices of the
  source buffer back to ``pickle.loads`` so the array comes back as a view over it.
* ``ARROW``: a ``pyarrow.Table`` or ``RecordBatch`` as one Arrow IPC stream, read
  back zero-copy with ``pyarrow.ipc``.

The flat layout written by :func:`write_to` / :func:`to_bytes` (little endian)::

    offset 0   header       magic b"SLCE", version u8, kind u8, reserved u16,
                            number of buffers u32, len(main) u64        (20 bytes)
    offset 20  buffer table one (offset u64, length u64) per buffer
    then       main         the pickle stream (or the Arrow marker)
    then       buffers      each starting at an offset that is a multiple of 64

Offsets are relative to the start of the layout; a shared-memory segment starts on
a page boundary, so there the buffers are 64-byte aligned in memory too (what
numpy's SIMD loops and Arrow's readers like).

>>> loads(dumps({"a": [1, 2, None]}))
{'a': [1, 2, None]}
"""

from __future__ import annotations

import contextvars
import importlib
import pickle
import struct
import sys
from dataclasses import dataclass
from typing import Any

from sluice.exceptions import InternalError, SerializationError

__all__ = [
    "PICKLE5",
    "ARROW",
    "ALIGNMENT",
    "SerializedObject",
    "serialize",
    "deserialize",
    "write_to",
    "layout_pieces",
    "to_bytes",
    "dumps",
    "loads",
    "note_contained_id",
    "preload_decoders",
]

PICKLE5 = 1
ARROW = 2
ALIGNMENT = 64

_MAGIC = b"SLCE"
_VERSION = 1
_HEADER = struct.Struct("<4sBBHIQ")
_BUFFER_ENTRY = struct.Struct("<QQ")
_ARROW_TABLE = b"T"
_ARROW_BATCH = b"B"

# Exact types whose pickles hold no buffers, no object references and no __main__
# globals: they skip the contextvar, the buffer callback and the __main__ scan.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})

# The ids noted by ObjectRef.__reduce__ during the serialize call running in this
# context. Each serialize call installs its own list and restores the previous one,
# so nested calls (a __reduce__ that itself serializes) keep separate lists; outside
# any serialize call the value is None and notes are dropped.
_contained_ids: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "sluice_contained_ids", default=None
)


@dataclass(frozen=True, slots=True)
class SerializedObject:
    """A value in serialized form, ready to be laid out flat by :func:`write_to`.

    ``main`` is the pickle stream (``PICKLE5``) or a one-byte marker saying Table or
    RecordBatch (``ARROW``); ``buffers`` are the out-of-band pickle buffers, or the
    Arrow IPC stream as the single buffer, each a 1-D unsigned-byte memoryview that
    still points at the original value's memory. ``contained_ids`` are the ids of
    the object references pickled inside the value, in the order they were met (one
    reference object that appears twice is pickled, and so noted, once).
    """

    kind: int
    main: bytes
    buffers: tuple[memoryview, ...]
    contained_ids: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """The exact size of the flat layout :func:`write_to` writes."""
        if not self.buffers:
            return _HEADER.size + len(self.main)
        offsets = _buffer_offsets(self)
        return offsets[-1] + self.buffers[-1].nbytes


def note_contained_id(object_id: int) -> None:
    """Record that an object reference with ``object_id`` is being pickled.

    Called from ``ObjectRef.__reduce__``; the innermost :func:`serialize` call in
    progress collects the id into its ``contained_ids``. Outside any serialize call
    (e.g. plain ``pickle.dumps``) the note is ignored.
    """
    ids = _contained_ids.get()
    if ids is not None:
        ids.append(object_id)


def serialize(value: Any) -> SerializedObject:
    """Serialize ``value`` without copying its large buffers.

    Arrow tables and record batches become one Arrow IPC stream (assembled here, the
    one copy this module makes of large data); everything else is pickled with protocol 5 (C pickle first; cloudpickle when that fails or when the
    stream names ``__main__``, whose globals a worker process cannot import).

    >>> serialize(7).kind == PICKLE5
    True
    """
    if type(value) in _PLAIN_TYPES:
        return SerializedObject(PICKLE5, pickle.dumps(value, protocol=5), (), ())
    ids: list[int] = []
    token = _contained_ids.set(ids)
    try:
        pa = sys.modules.get("pyarrow")
        # getattr: another thread may be importing pyarrow right now (a module partly
        # initialised, its Table not defined yet: then nothing here is a Table either)
        if pa is not None and type(value) in (getattr(pa, "Table", None),
                                              getattr(pa, "RecordBatch", None)):
            return _serialize_arrow(value, pa)
        return _serialize_pickle(value, ids)
    finally:
        _contained_ids.reset(token)


def _serialize_pickle(value: Any, ids: list[int]) -> SerializedObject:
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception:
        stream = None
    if stream is None or b"__main__" in stream:
        # The attempt above may have noted ids and buffers already; start afresh.
        buffers.clear()
        ids.clear()
        stream = _cloudpickle_dumps(value, buffers)
    return SerializedObject(PICKLE5, stream, tuple(b.raw() for b in buffers), tuple(ids))


def _cloudpickle_dumps(value: Any, buffers: list[pickle.PickleBuffer]) -> bytes:
    import cloudpickle  # lazily: rarely needed

    try:
        stream: bytes = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        kind = type(value)
        raise SerializationError(
            f"cannot serialize a value of type {kind.__module__}.{kind.__qualname__}: "
            f"{type(exc).__name__}: {exc}; make the value picklable (e.g. give it a "
            f"__reduce__ method) or create it inside the task instead of passing it"
        ) from exc
    return stream


def _serialize_arrow(value: Any, pa: Any) -> SerializedObject:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, value.schema) as writer:
        writer.write(value)
    stream = memoryview(sink.getvalue()).cast("B")
    marker = _ARROW_TABLE if isinstance(value, pa.Table) else _ARROW_BATCH
    return SerializedObject(ARROW, marker, (stream,), ())


def _buffer_offsets(obj: SerializedObject) -> list[int]:
    """Where each buffer of ``obj`` starts in the flat layout (64-byte aligned)."""
    offsets = []
    position = _HEADER.size + _BUFFER_ENTRY.size * len(obj.buffers) + len(obj.main)
    for buffer in obj.buffers:
        position = (position + ALIGNMENT - 1) & ~(ALIGNMENT - 1)
        offsets.append(position)
        position += buffer.nbytes
    return offsets


def layout_pieces(obj: SerializedObject) -> list[bytes | memoryview]:
    """The flat layout of ``obj`` as consecutive pieces, for gather-writes.

    Header and buffer table, ``main``, then zero padding and each buffer in turn;
    the buffers are the object's own memory, not copies. Concatenated, the pieces
    are exactly what :func:`write_to` writes.
    """
    head = _HEADER.pack(_MAGIC, _VERSION, obj.kind, 0, len(obj.buffers), len(obj.main))
    if not obj.buffers:
        return [head, obj.main]
    offsets = _buffer_offsets(obj)
    table = b"".join(
        _BUFFER_ENTRY.pack(offset, buffer.nbytes) for offset, buffer in zip(offsets, obj.buffers)
    )
    pieces: list[bytes | memoryview] = [head, table, obj.main]
    position = _HEADER.size + len(table) + len(obj.main)
    for offset, buffer in zip(offsets, obj.buffers):
        if offset > position:
            pieces.append(bytes(offset - position))
        pieces.append(buffer)
        position = offset + buffer.nbytes
    return pieces


def write_to(obj: SerializedObject, buf: memoryview) -> None:
    """Write the flat layout of ``obj`` into the writable ``buf`` (padding zeroed).

    ``buf`` must hold at least ``obj.nbytes`` bytes; bytes past that are untouched.
    """
    target = memoryview(buf).cast("B")
    if target.nbytes < obj.nbytes:
        raise InternalError(
            f"write_to got a buffer of {target.nbytes} bytes for an object of "
            f"{obj.nbytes} bytes; allocate at least obj.nbytes"
        )
    position = 0
    for piece in layout_pieces(obj):
        end = position + len(piece) if isinstance(piece, bytes) else position + piece.nbytes
        target[position:end] = piece
        position = end


def to_bytes(obj: SerializedObject) -> bytes:
    """The flat layout of ``obj`` as a new ``bytes`` object (for values sent inline)."""
    if not obj.buffers:
        return _HEADER.pack(_MAGIC, _VERSION, obj.kind, 0, 0, len(obj.main)) + obj.main
    return b"".join(layout_pieces(obj))


def dumps(value: Any) -> bytes:
    """``to_bytes(serialize(value))``: a value's flat layout in one call."""
    return to_bytes(serialize(value))


def deserialize(buf: bytes | bytearray | memoryview) -> Any:
    """Rebuild a value from its flat layout, zero-copy.

    Large buffers come back as views over ``buf``: a numpy array read from a
    read-only mapping is itself read-only, and keeps the mapping alive.
    """
    view = memoryview(buf)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    try:
        magic, version, kind, _, nbuffers, main_len = _HEADER.unpack_from(view)
    except struct.error:
        raise _not_a_layout(view) from None
    if magic != _MAGIC or version != _VERSION:
        raise _not_a_layout(view)
    if nbuffers == 0 and kind == PICKLE5:  # the fast path of small values
        return _unpickle(view[_HEADER.size : _HEADER.size + main_len], [])
    main_start = _HEADER.size + _BUFFER_ENTRY.size * nbuffers
    main = view[main_start : main_start + main_len]
    buffers = []
    for index in range(nbuffers):
        offset, length = _BUFFER_ENTRY.unpack_from(view, _HEADER.size + _BUFFER_ENTRY.size * index)
        if offset + length > view.nbytes:
            raise SerializationError(
                f"cannot deserialize: buffer {index} ends at byte {offset + length} but the "
                f"data has {view.nbytes} bytes; it is truncated (was its writer killed?)"
            )
        buffers.append(view[offset : offset + length])
    if kind == PICKLE5:
        return _unpickle(main, buffers)
    if kind == ARROW:
        return _read_arrow(bytes(main), buffers[0])
    raise SerializationError(
        f"cannot deserialize unknown kind {kind}; expected {PICKLE5} (pickle) or {ARROW} (arrow)"
    )


def _not_a_layout(view: memoryview) -> SerializationError:
    return SerializationError(
        f"cannot deserialize {view.nbytes} bytes starting {bytes(view[:8])!r}: expected the "
        f"{_HEADER.size}-byte header {_MAGIC!r} version {_VERSION}; the data is truncated, was "
        f"not written by sluice, or by another sluice version (use one version everywhere)"
    )


def _unpickle(main: memoryview, buffers: list[memoryview]) -> Any:
    try:
        return pickle.loads(main, buffers=buffers)
    except Exception as exc:
        raise SerializationError(
            f"cannot unpickle a value: {type(exc).__name__}: {exc}; make sure the modules "
            f"that define its types are importable in this process"
        ) from exc


def _read_arrow(marker: bytes, stream: memoryview) -> Any:
    import pyarrow as pa

    reader = pa.ipc.open_stream(pa.py_buffer(stream))
    if marker == _ARROW_BATCH:
        return reader.read_next_batch()
    return reader.read_all()


def loads(data: bytes | bytearray | memoryview) -> Any:
    """The inverse of :func:`dumps` (same as :func:`deserialize`)."""
    return deserialize(data)


PRELOADED_MODULES = ("numpy",)
"""What :func:`preload_decoders` imports: the library whose values processes most often receive."""


def preload_decoders() -> None:
    """Import :data:`PRELOADED_MODULES` now (a module that does not import is skipped).

    A worker (or the template workers are forked from) calls it as it starts, so the
    first task that receives a numpy array does not pay for importing numpy inside its
    own time (~40 ms on an idle 2-core VM, over 100 ms under load; ~14 MB more
    resident, mostly shared library pages).
    It runs before the worker reads its first message rather than in a background
    thread: two threads importing numpy at once can fail with a circular-import
    error on the partly initialized package.
    """
    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
