"""The data plane between node stores: segments copied over Arrow Flight.

In a cluster each node runs a :class:`StoreServer` over its own shared-memory
segments. A node that needs an object whose segment lives on another node asks its
own server to :func:`pull` it; that server fetches the segment from the source's
server into a new local segment, once however many local callers ask at the same
time, and local workers then map it like any other segment. A driver without a
store of its own reads values with :func:`fetch_value`, writes them with
:func:`upload` and frees them with :func:`unlink`.

What travels on the wire, told apart by the stream's schema metadata
(``sluice.transfer``):

* ``arrow``: a segment holding an Arrow table or record batch streams the table
  itself, as Arrow record batches read zero-copy from the mapping (tables are
  never pickled); the receiver lays it out again with ``serialize`` + ``write_segment``.
* ``bytes``: any other segment streams its raw flat layout, zero-copy from the
  mapping, as record batches of one ``uint8`` column, :data:`CHUNK_BYTES` each;
  the receiver writes the chunks in order into the new segment.

A new segment is written under a temporary name and linked to its final name only
when complete, so no reader ever maps a half-written segment. Every call carries
``authorization: Bearer <token>``; a server refuses calls without the cluster's
token. Only names in the sluice namespace (see :func:`check_segment_name`) are
read, written or removed.
"""

from __future__ import annotations

import functools
import hmac
import json
import mmap
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pyarrow as pa
from pyarrow import flight

from sluice.exceptions import ObjectLostError, SluiceError
from sluice.store import serialization
from sluice.store.segment_stream import (
    CHUNK_BYTES,
    SIZE_KEY,
    TransferError,
    arrow_table,
    bytes_schema,
    bytes_table,
    chunk_batches,
    copy_chunks,
    rebuild_arrow,
    receive_segment,
    segment_size,
    stream_kind,
)
from sluice.store.shm import segment_path, unlink_segment

__all__ = [
    "CHUNK_BYTES",
    "AuthError",
    "StoreServer",
    "TransferError",
    "check_segment_name",
    "fetch_value",
    "pull",
    "remove_spilled",
    "spill",
    "unlink",
    "upload",
]

_PREFIX = "sluice-"
_KIND_OFFSET = 5  # the layout header is magic (4 bytes), version (1), kind (1), ...
_NO_TOKEN = (
    "no sluice cluster token was sent; pass token= to sluice.init, --token, or set SLUICE_TOKEN"
)
_BAD_TOKEN = (
    "the sluice cluster token does not match this cluster's; use the token the cluster "
    "was started with (token= to sluice.init, --token, or SLUICE_TOKEN)"
)


class AuthError(SluiceError, PermissionError):
    """A node store refused the call's cluster token; the message says why."""


def check_segment_name(name: object) -> str:
    """Return ``name`` if it names a sluice segment, else raise ``ValueError``.

    >>> check_segment_name("sluice-4242-beef-ff")
    'sluice-4242-beef-ff'
    """
    if (
        not isinstance(name, str)
        or not name.startswith(_PREFIX)
        or "/" in name
        or ".." in name
        or "\0" in name
        or len(name) > 255
    ):
        raise ValueError(
            f"{name!r} is not a sluice object segment name; expected 'sluice-<session>-<id>' "
            f"with no '/' or '..' (node stores serve only their own segments)"
        )
    return name


# ----------------------------------------------------------------------------- server


class _TokenCheck(flight.ServerMiddlewareFactory):
    """Refuses every call whose ``authorization`` header lacks the cluster token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        values = headers.get("authorization") or []
        if not values:
            raise flight.FlightUnauthenticatedError(_NO_TOKEN)
        sent = values[0] if isinstance(values[0], bytes) else str(values[0]).encode()
        if not hmac.compare_digest(sent, self._expected):
            raise flight.FlightUnauthenticatedError(_BAD_TOKEN)


# Errors a handler raises, sent to the client as a kind it turns back into the same type.
_ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (AuthError, "auth"),
    (ObjectLostError, "lost"),
    (FileExistsError, "exists"),
    (ConnectionError, "unreachable"),
    (ValueError, "invalid"),
    (TransferError, "transfer"),
)


def _served(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a server handler so its errors reach the client with their kind and message."""

    @functools.wraps(handler)
    def wrapper(*args: Any) -> Any:
        try:
            return handler(*args)
        except flight.FlightError:
            raise
        except Exception as exc:
            kind = next((k for cls, k in _ERROR_KINDS if isinstance(exc, cls)), "internal")
            message = str(exc) if kind != "internal" else f"{type(exc).__name__}: {exc}"
            info = json.dumps({"kind": kind, "message": message}).encode()
            raise flight.FlightServerError(message, extra_info=info) from exc

    return wrapper


class StoreServer(flight.FlightServerBase):
    """Arrow Flight server over this node's shared-memory segments.

    It accepts calls as soon as it is constructed (gRPC serves from its own
    threads), so there is no loop to run; :meth:`shutdown` stops it. ``tls=(cert
    PEM, key PEM)`` serves over TLS; ``tls_root`` is what this server trusts when
    it pulls from other nodes (default: its own certificate, for a cluster that
    shares one). ``advertise`` is the host other nodes use to reach it (default
    ``host``), as written into :attr:`location`. ``pulls`` counts the transfers
    this server actually performed for :func:`pull`.
    """

    def __init__(
        self,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[bytes, bytes] | None = None,
        advertise: str | None = None,
        tls_root: bytes | None = None,
        spill_dir: str | None = None,
    ) -> None:
        if not token:
            raise ValueError(
                "StoreServer needs a non-empty cluster token; pass token= (e.g. SLUICE_TOKEN)"
            )
        scheme = "grpc+tls" if tls else "grpc+tcp"
        options: dict[str, Any] = {"middleware": {"token": _TokenCheck(token)}}
        if tls:
            options["tls_certificates"] = [flight.CertKeyPair(tls[0], tls[1])]
        super().__init__(f"{scheme}://{_host_port(host, port)}", **options)
        self._token = token
        self.spill_dir = spill_dir  # segments spilled to disk are served from here
        self._peer_tls_root = tls_root if tls_root is not None else (tls[0] if tls else None)
        self.location = f"{scheme}://{_host_port(advertise or host, self.port)}"
        self.pulls = 0         # segments pulled into this node so far
        self.pulled_bytes = 0  # and their bytes
        self._lock = threading.Lock()
        # local_name -> the transfer in progress into it; an entry exists only while
        # the transfer runs, and the segment exists (under its final name) before
        # the entry is removed, so a caller finds one or the other.
        self._pending: dict[str, Future[int]] = {}

    def __repr__(self) -> str:
        return f"StoreServer({self.location!r}, pulls={self.pulls})"

    @_served
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        """Stream segment ``ticket`` (its name), as Arrow batches or raw layout chunks."""
        name = _ticket_name(ticket.ticket)
        mapping = _map_segment(name, self.spill_dir)
        if mapping is None:  # an empty segment (see shm.create_segment)
            return flight.RecordBatchStream(bytes_table(pa.py_buffer(b"")))
        view = memoryview(mapping)
        if view[:4] == b"SLCE" and view[_KIND_OFFSET] == serialization.ARROW:
            return flight.RecordBatchStream(arrow_table(serialization.deserialize(view)))
        return flight.RecordBatchStream(bytes_table(pa.py_buffer(mapping)))

    @_served
    def do_put(
        self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any
    ) -> None:
        """Write the stream as the new segment named by ``descriptor``'s path."""
        if descriptor.path is None or len(descriptor.path) != 1:
            raise ValueError(f"upload needs a descriptor naming one segment, got {descriptor!r}")
        name = _ticket_name(descriptor.path[0])
        receive_segment(reader, name)

    @_served
    def do_action(self, context: Any, action: flight.Action) -> list[flight.Result]:
        """``pull`` (body: source, name, local_name; result: size) or ``unlink`` (names)."""
        body = json.loads(action.body.to_pybytes() or b"null")
        if action.type == "pull":
            size = self._pull(body["source"], body["name"], body["local_name"])
            return [flight.Result(pa.py_buffer(str(size).encode()))]
        if action.type == "unlink":
            for name in [check_segment_name(name) for name in body]:
                unlink_segment(name)
            return []
        raise ValueError(
            f"unknown sluice store action {action.type!r}; expected 'pull' or 'unlink'"
        )

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        """The actions :meth:`do_action` understands."""
        return [("pull", "copy a segment from another node"), ("unlink", "remove segments")]

    def _pull(self, source: str, name: str, local_name: str) -> int:
        check_segment_name(name)
        check_segment_name(local_name)
        with self._lock:
            pending = self._pending.get(local_name)
            owner = pending is None
            if pending is None:
                size = segment_size(local_name)
                if size is not None:
                    return size
                pending = self._pending[local_name] = Future()
        if not owner:
            return pending.result()
        try:
            size = _download(source, name, local_name, self._token, self._peer_tls_root)
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        else:
            if self.spill_dir is not None:  # a spilled segment pulled back into memory
                remove_spilled(self.spill_dir, local_name)
            pending.set_result(size)
            with self._lock:
                self.pulls += 1
                self.pulled_bytes += size
            return size
        finally:
            with self._lock:
                del self._pending[local_name]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _ticket_name(raw: bytes) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{raw!r} is not a sluice object segment name") from None
    return check_segment_name(text)


def _map_segment(name: str, spill_dir: str | None = None) -> mmap.mmap | None:
    """A read-only mapping of segment ``name`` (None when empty), from shared memory or,
    spilled, from ``spill_dir``; lost if in neither."""
    paths = [segment_path(name)]
    if spill_dir is not None:
        paths.append(os.path.join(spill_dir, name))
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(fd).st_size
            return mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
        finally:
            os.close(fd)
    raise ObjectLostError(
        f"object segment {name} is not on this node (no {segment_path(name)}); it was "
        f"freed, its session ended, or it lives on another node"
    )


def spill(spill_dir: str, name: str) -> None:
    """Move segment ``name`` from shared memory to ``spill_dir`` on disk. Processes that
    mapped it keep their views; it is served from disk (and pulled back) afterwards."""
    target = os.path.join(spill_dir, check_segment_name(name))
    temp = f"{target}.partial"
    try:
        shutil.copyfile(segment_path(name), temp)
    except FileNotFoundError:
        return  # freed meanwhile
    os.replace(temp, target)
    unlink_segment(name)


def remove_spilled(spill_dir: str, name: str) -> None:
    """Remove the disk copy of segment ``name``, if any."""
    try:
        os.unlink(os.path.join(spill_dir, check_segment_name(name)))
    except FileNotFoundError:
        pass


def keep_heap_memory() -> bool:
    """Make this process's malloc keep freed memory instead of returning it to the kernel.

    Flight and gRPC allocate a fresh buffer per chunk; by default glibc serves large
    ones with mmap and unmaps them when freed, so every chunk of every transfer pays
    page faults on fresh pages (about 0.3 GB/s on a small VM). With a high mmap
    threshold and no trimming, chunks reuse warm heap pages: a 200 MB pull goes from
    ~0.6 to ~1 GB/s here. For node daemons, which do little else; returns False
    where there is no glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(mallopt(m_mmap_threshold, 256 << 20) and mallopt(m_trim_threshold, 1 << 30)
                and mallopt(m_top_pad, 64 << 20))


# ----------------------------------------------------------------------------- client

# (location, token, tls_root) -> a client and the call options carrying the token. One
# per process and target: a FlightClient holds a gRPC channel, costly to open and
# safe to share between threads. Entries go when a call finds the target unreachable.
_clients: dict[
    tuple[str, str, bytes | None], tuple[flight.FlightClient, flight.FlightCallOptions]
] = {}
_clients_lock = threading.Lock()


def _client(
    key: tuple[str, str, bytes | None],
) -> tuple[flight.FlightClient, flight.FlightCallOptions]:
    with _clients_lock:
        entry = _clients.get(key)
        if entry is None:
            location, token, tls_root = key
            client = flight.FlightClient(location, tls_root_certs=tls_root)
            headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
            entry = _clients[key] = (client, flight.FlightCallOptions(headers=headers))
        return entry


def _forget(key: tuple[str, str, bytes | None]) -> None:
    # Dropped, not closed: another thread may be mid-call on it; it closes when freed.
    with _clients_lock:
        _clients.pop(key, None)


def _call(location: str, token: str, tls_root: bytes | None, operation: Callable[..., Any]) -> Any:
    """Run ``operation(client, options)`` against ``location``, turning Flight errors into sluice's."""
    key = (location, token, tls_root)
    client, options = _client(key)
    try:
        return operation(client, options)
    except flight.FlightUnauthenticatedError as exc:
        raise AuthError(
            f"the sluice node store at {location} refused the call: {_cause(exc)}"
        ) from None
    except flight.FlightUnavailableError as exc:
        _forget(key)
        raise ConnectionError(
            f"cannot reach the sluice node store at {location}: {_cause(exc)}; check that the "
            f"node is running, the address is right, and TLS settings match (tls_root)"
        ) from exc
    except flight.FlightError as exc:
        raise _server_error(exc, location) from None


def _cause(exc: BaseException) -> str:
    """The server's or gRPC's own words in a Flight error, without gRPC's debug context."""
    text = str(exc).removeprefix("Flight returned unavailable error, with message: ")
    for marker in (". Detail:", ". gRPC client debug context:"):
        text = text.split(marker)[0]
    return text


def _server_error(exc: Any, location: str) -> Exception:
    try:
        info = json.loads(exc.extra_info or b"{}")
    except ValueError:
        info = {}
    message = info.get("message") or _cause(exc)
    kinds = {
        "auth": AuthError,
        "lost": ObjectLostError,
        "exists": FileExistsError,
        "unreachable": ConnectionError,
        "invalid": ValueError,
    }
    error_type = kinds.get(info.get("kind"), TransferError)
    if error_type is TransferError:
        message = f"the sluice node store at {location} failed: {message}"
    return error_type(message)


def _download(source: str, name: str, local_name: str, token: str, tls_root: bytes | None) -> int:
    """Copy segment ``name`` from the server at ``source`` into local segment ``local_name``."""

    def copy(client: flight.FlightClient, options: Any) -> int:
        return receive_segment(client.do_get(flight.Ticket(name.encode()), options), local_name)

    return int(_call(source, token, tls_root, copy))


def _action(client: flight.FlightClient, options: Any, kind: str, body: Any) -> list[bytes]:
    action = flight.Action(kind, json.dumps(body).encode())
    return [result.body.to_pybytes() for result in client.do_action(action, options)]


def pull(
    local: str, source: str, name: str, local_name: str, token: str, tls_root: bytes | None = None
) -> int:
    """Ask the node server at ``local`` to copy segment ``name`` from the server at ``source``.

    The copy becomes ``local``'s segment ``local_name``; returns its size in bytes.
    Concurrent calls for the same ``local_name`` do one transfer (the others wait
    for it); a segment already present returns at once. ``tls_root`` is what this
    process trusts when it calls ``local``.
    """
    check_segment_name(name)
    check_segment_name(local_name)
    body = {"source": source, "name": name, "local_name": local_name}
    results = _call(local, token, tls_root, lambda c, o: _action(c, o, "pull", body))
    return int(results[0])


def fetch_value(location: str, name: str, token: str, tls_root: bytes | None = None) -> Any:
    """Read segment ``name`` from the server at ``location`` and return its value.

    The value is what :func:`serialization.deserialize` gives, built over this
    process's own memory (arrays come back read-only, as from a store). For a
    driver that has no local store.
    """
    check_segment_name(name)

    def read(client: flight.FlightClient, options: Any) -> Any:
        reader = client.do_get(flight.Ticket(name.encode()), options)
        kind, metadata = stream_kind(reader.schema)
        if kind == b"arrow":
            return rebuild_arrow(reader, metadata)
        size = int(metadata[SIZE_KEY])
        buffer = pa.allocate_buffer(size)  # 64-byte aligned, like a segment's buffers
        target = memoryview(buffer)
        position = 0

        def copy(chunk: memoryview) -> None:
            nonlocal position
            target[position : position + chunk.nbytes] = chunk
            position += chunk.nbytes

        copy_chunks(reader, size, copy)
        return serialization.deserialize(target.toreadonly())

    return _call(location, token, tls_root, read)


def upload(
    location: str,
    name: str,
    obj: serialization.SerializedObject,
    token: str,
    tls_root: bytes | None = None,
) -> int:
    """Write ``obj`` as the new segment ``name`` on the node at ``location``; return its size.

    The flat layout travels as raw chunks straight from ``obj``'s buffers.
    """
    check_segment_name(name)
    size = obj.nbytes
    schema = bytes_schema(size)

    def send(client: flight.FlightClient, options: Any) -> None:
        writer, _ = client.do_put(flight.FlightDescriptor.for_path(name), schema, options)
        for piece in serialization.layout_pieces(obj):
            for batch in chunk_batches(pa.py_buffer(piece), schema):
                writer.write_batch(batch)
        writer.close()  # finishes the stream and raises the server's error, if any

    _call(location, token, tls_root, send)
    return size


def unlink(location: str, names: list[str], token: str, tls_root: bytes | None = None) -> None:
    """Remove segments ``names`` on the node at ``location`` (freed objects); missing ones are fine."""
    names = [check_segment_name(name) for name in names]
    if names:
        _call(location, token, tls_root, lambda c, o: _action(c, o, "unlink", names))
