"""Direct channels: requests from routers (the HTTP proxy, deployment handles) to replicas
over one socket per pair, with no scheduler and no task submission in the path.

A replica listens (:func:`serve_channel`) on a Unix socket on its own machine, or on TCP
where callers are on other machines; a caller keeps one :class:`ChannelClient` per replica
and multiplexes its requests over it by request id. Every message is one frame::

    u32 length of the rest | u64 request id | u8 kind | u16 len(method) | u32 len(meta)
    | method (utf-8) | meta | body

``meta`` and ``body`` are bytes the layers above choose (an HTTP request travels as its
head in ``meta`` and its body as ``body``, never pickled); a handle call pickles its
arguments into ``body``. Kinds: a :data:`CALL` (or :data:`HTTP`) is answered by one
:data:`OK` or :data:`ERROR`, or, for a streaming call, by :data:`ITEM` frames and one
:data:`END` (or :data:`ERROR`). The caller may send :data:`CANCEL` for a request it gave up
(a client that disconnected): the replica cancels the coroutine serving it.

A broken connection fails every request on it with :class:`ChannelClosed`, so a router
learns at once that a replica died (and stops routing to it).

>>> Frame(7, CALL, "add", b"", b"x").request_id
7
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

CALL, HTTP, OK, ERROR, ITEM, END, CANCEL = 1, 2, 3, 4, 5, 6, 7
"""Frame kinds: requests (CALL, HTTP), answers (OK, ERROR, ITEM, END), and CANCEL."""

_HEAD = struct.Struct("<IQBHI")
_PREFIX = struct.Struct("<I")
LIMIT = 1 << 31
"""The largest frame (bytes after the length field)."""


class ChannelClosed(ConnectionError):
    """The connection to a replica broke (it died, or was stopped) before the answer came."""


@dataclass(frozen=True)
class Frame:
    """One message on a channel (plain data)."""

    request_id: int
    kind: int
    method: str
    meta: bytes
    body: bytes


def encode(frame: Frame) -> bytes:
    """``frame`` as bytes on the wire.

    >>> decode(encode(Frame(1, OK, "m", b"a", b"bc"))[4:])
    Frame(request_id=1, kind=3, method='m', meta=b'a', body=b'bc')
    """
    method = frame.method.encode()
    rest = _HEAD.size - 4 + len(method) + len(frame.meta) + len(frame.body)
    if rest >= LIMIT:
        raise ValueError(f"a request or answer of {rest} bytes is over the channel's limit of "
                         f"{LIMIT} bytes; pass large values as ObjectRefs (sluice.put)")
    return b"".join((_HEAD.pack(rest, frame.request_id, frame.kind, len(method), len(frame.meta)),
                     method, frame.meta, frame.body))


def decode(data: bytes) -> Frame:
    """The frame whose bytes after the length field are ``data``."""
    request_id, kind, n_method, n_meta = struct.unpack_from("<QBHI", data)
    at = _HEAD.size - 4
    method = data[at:at + n_method].decode()
    at += n_method
    return Frame(request_id, kind, method, data[at:at + n_meta], data[at + n_meta:])


def take_frames(buffer: bytearray, data: bytes) -> list[Frame]:
    """The whole frames in the bytes ``buffer`` held followed by ``data``; the bytes of a
    frame not whole yet stay in ``buffer``.

    >>> buffer, wire = bytearray(), encode(Frame(1, OK, "", b"", b"ab"))
    >>> take_frames(buffer, wire[:5]), take_frames(buffer, wire[5:])[0].body
    ([], b'ab')
    """
    if buffer:
        buffer += data
        data = bytes(buffer)
        buffer.clear()
    frames = []
    at, end = 0, len(data)
    while end - at >= 4:
        (size,) = _PREFIX.unpack_from(data, at)
        if end - at - 4 < size:
            break
        frames.append(decode(data[at + 4:at + 4 + size]))
        at += 4 + size
    if at < end:
        buffer += data[at:]
    return frames


def parse_address(address: str) -> tuple[str, Any]:
    """``unix:PATH`` -> ("unix", PATH); ``tcp:HOST:PORT`` -> ("tcp", (HOST, PORT)).

    >>> parse_address("tcp:127.0.0.1:9000"), parse_address("unix:/tmp/r.sock")
    (('tcp', ('127.0.0.1', 9000)), ('unix', '/tmp/r.sock'))
    """
    scheme, _, rest = address.partition(":")
    if scheme == "unix" and rest:
        return "unix", rest
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return "tcp", (host, int(port))
    raise ValueError(f"channel address {address!r} is not unix:PATH or tcp:HOST:PORT")


Handler = Callable[[Frame], Awaitable[Any]]
"""Serves one request: returns the answer's body (bytes) for an OK, or an async iterator of
item bodies for a stream; raises to answer ERROR (see :func:`serve_channel`)."""


async def serve_channel(address: str, handler: Handler,
                        error_body: Callable[[BaseException], bytes]) -> asyncio.AbstractServer:
    """Listen on ``address`` and serve every request with ``handler``, each in its own task.

    ``handler(frame)`` returns bytes (answered OK), or an async iterator of bytes (each an
    ITEM, then END); an exception is answered ERROR with ``error_body(exc)``. A CANCEL frame
    cancels the request's task; a caller that disconnects cancels all of its requests.
    ``tcp:HOST:0`` picks a free port: read it from the server's sockets.
    """
    scheme, where = parse_address(address)

    def connection() -> _Requests:
        return _Requests(handler, error_body)

    loop = asyncio.get_running_loop()
    if scheme == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        return await loop.create_unix_server(connection, path=where)
    return await loop.create_server(connection, host=where[0], port=where[1])


class _Requests(asyncio.Protocol):
    """A replica's end of one caller's connection: each whole frame starts its request's
    task at once (no reader task, no await per frame); CANCEL cancels that task, and the
    end of the connection cancels them all (nobody reads their answers)."""

    def __init__(self, handler: Handler, error_body: Callable[[BaseException], bytes]):
        self.handler = handler
        self.error_body = error_body
        self.running: dict[int, asyncio.Task] = {}
        self.buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None
        self._resumed: asyncio.Future | None = None  # while the caller reads slower than we write

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        for frame in take_frames(self.buffer, data):
            if frame.kind == CANCEL:
                task = self.running.get(frame.request_id)
                if task is not None:
                    task.cancel()
            else:
                self.running[frame.request_id] = asyncio.ensure_future(self._serve(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        for task in list(self.running.values()):
            task.cancel()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def _send(self, frame: Frame) -> None:  # at once: deferring to batch writes costs latency
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(encode(frame))

    async def _drain(self) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the caller's connection closed")
        if self._resumed is not None:
            await asyncio.shield(self._resumed)

    async def _serve(self, frame: Frame) -> None:
        rid = frame.request_id
        try:
            result = await self.handler(frame)
            if isinstance(result, (bytes, bytearray, memoryview)):
                self._send(Frame(rid, OK, "", b"", bytes(result)))
            else:
                async for item in result:
                    self._send(Frame(rid, ITEM, "", b"", bytes(item)))
                    await self._drain()
                self._send(Frame(rid, END, "", b"", b""))
        except asyncio.CancelledError:
            pass  # the caller gave up on it: nobody reads an answer
        except Exception as exc:  # noqa: BLE001 - the caller gets the error
            try:
                body = self.error_body(exc)
            except Exception:  # noqa: BLE001 - e.g. a chain too deep to pickle: its text
                body = self.error_body(RuntimeError(f"{type(exc).__name__}: {exc}"))
            self._send(Frame(rid, ERROR, "", b"", body))
        finally:
            self.running.pop(rid, None)


class _Answers(asyncio.Protocol):
    """A caller's end of a connection: each frame, once whole, goes to the client at once
    (no task or await per frame); the end of the connection fails its waiting requests."""

    def __init__(self, client: ChannelClient):
        self.client = client
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        for frame in take_frames(self.buffer, data):
            self.client._deliver(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._fail(ChannelClosed(f"the connection to replica {self.client.address} broke"))


class ChannelClient:
    """A caller's connection to one replica, shared by all its requests (one event loop).

    :meth:`call` sends a request and waits for its answer; :meth:`stream` yields the items
    of a streaming one. ``ongoing`` counts the requests sent and not answered yet.
    """

    def __init__(self, address: str):
        self.address = address
        self.ongoing = 0
        self.closed = False
        self._next_id = 0
        self._waiting: dict[int, asyncio.Queue | asyncio.Future] = {}
        self._may_stream: set[int] = set()  # open() requests still waiting for a first frame
        self._opened: dict[int, asyncio.Queue] = {}  # open() requests answered by a stream
        self._writer: asyncio.WriteTransport | None = None  # once connected
        self._connecting: asyncio.Task | None = None

    async def _connect(self) -> asyncio.WriteTransport:
        if self._writer is not None:
            return self._writer
        if self.closed:
            raise ChannelClosed(f"the channel to {self.address} is closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> asyncio.WriteTransport:
        scheme, where = parse_address(self.address)
        loop = asyncio.get_running_loop()
        try:
            if scheme == "unix":
                transport, _ = await loop.create_unix_connection(lambda: _Answers(self), where)
            else:
                transport, _ = await loop.create_connection(lambda: _Answers(self), *where)
        except OSError as exc:
            self._fail(ChannelClosed(f"cannot connect to {self.address}: {exc}"))
            raise ChannelClosed(f"cannot connect to {self.address}: {exc}") from None
        sock = transport.get_extra_info("socket")
        if scheme == "tcp" and sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.closed:  # closed while it connected
            transport.close()
            raise ChannelClosed(f"the channel to {self.address} is closed")
        self._writer = transport
        return transport

    def _deliver(self, frame: Frame) -> None:
        """An answer frame arrived: hand it to the request waiting for it."""
        rid = frame.request_id
        waiter = self._waiting.get(rid)
        if waiter is None:
            return
        if isinstance(waiter, asyncio.Queue):
            waiter.put_nowait(frame)
            if frame.kind != ITEM:
                self._waiting.pop(rid, None)
            return
        if frame.kind == ITEM and rid in self._may_stream:  # a streamed answer
            self._may_stream.discard(rid)
            self._waiting[rid] = self._opened[rid] = asyncio.Queue()
        else:
            self._waiting.pop(rid, None)
        if not waiter.done():
            waiter.set_result(frame)

    def _fail(self, exc: ChannelClosed) -> None:
        self.closed = True
        self._writer = None
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait(exc)
            elif not waiter.done():
                waiter.set_exception(exc)

    def _send(self, writer: asyncio.WriteTransport, frame: Frame) -> None:
        writer.write(encode(frame))

    async def call(self, kind: int, method: str, meta: bytes, body: bytes) -> Frame:
        """Send one request; its answer (an OK or ERROR frame). Cancelling the waiting
        coroutine sends CANCEL, so the replica stops serving it."""
        writer = await self._connect()
        self._next_id += 1
        rid = self._next_id
        answer = asyncio.get_running_loop().create_future()
        self._waiting[rid] = answer
        self.ongoing += 1
        try:
            self._send(writer, Frame(rid, kind, method, meta, body))
            return await answer
        except asyncio.CancelledError:
            self._cancel(rid)
            raise
        finally:
            self.ongoing -= 1

    async def open(self, kind: int, method: str, meta: bytes, body: bytes
                   ) -> tuple[Frame, FrameStream | None]:
        """Send one request that the replica answers with one frame or with a stream (an HTTP
        request: the caller cannot know which): its first frame and, when that is an ITEM,
        a :class:`FrameStream` of the frames after it (``aclose()`` it when done). Costs
        what :meth:`call` does when the answer is one frame. Cancelling the waiting
        coroutine sends CANCEL."""
        writer = await self._connect()
        self._next_id += 1
        rid = self._next_id
        answer = asyncio.get_running_loop().create_future()
        self._waiting[rid] = answer
        self._may_stream.add(rid)
        self.ongoing += 1
        try:
            self._send(writer, Frame(rid, kind, method, meta, body))
            first = await answer
        except BaseException as exc:
            self.ongoing -= 1
            self._may_stream.discard(rid)
            self._opened.pop(rid, None)
            if isinstance(exc, asyncio.CancelledError):
                self._cancel(rid)
            raise
        self._may_stream.discard(rid)
        frames = self._opened.pop(rid, None)
        if frames is None:  # one whole answer
            self.ongoing -= 1
            return first, None
        return first, FrameStream(self, rid, frames)

    async def stream(self, kind: int, method: str, meta: bytes, body: bytes
                     ) -> AsyncIterator[Frame]:
        """Send one streaming request; yield its ITEM frames, then its END or ERROR frame.
        Closing the iterator early sends CANCEL."""
        writer = await self._connect()
        self._next_id += 1
        rid = self._next_id
        frames: asyncio.Queue = asyncio.Queue()
        self._waiting[rid] = frames
        self.ongoing += 1
        finished = False
        try:
            self._send(writer, Frame(rid, kind, method, meta, body))
            while True:
                frame = await frames.get()
                if isinstance(frame, BaseException):
                    raise frame
                if frame.kind != ITEM:
                    finished = True
                yield frame
                if finished:
                    return
        finally:
            self.ongoing -= 1
            if not finished:
                self._cancel(rid)

    def _cancel(self, rid: int) -> None:
        self._waiting.pop(rid, None)
        writer = self._writer
        if writer is not None and not writer.is_closing():
            self._send(writer, Frame(rid, CANCEL, "", b"", b""))

    def close(self) -> None:
        """Close the connection; requests still waiting fail with :class:`ChannelClosed`."""
        writer = self._writer
        self._fail(ChannelClosed(f"the channel to {self.address} was closed"))
        if writer is not None:
            writer.close()


class FrameStream:
    """The frames of a streamed answer after its first (see :meth:`ChannelClient.open`):
    ITEM frames, then its END or ERROR frame. ``aclose()`` it when done, whether or not it
    was iterated to its end: closing it early sends CANCEL."""

    __slots__ = ("_client", "_rid", "_frames", "_finished", "_closed")

    def __init__(self, client: ChannelClient, rid: int, frames: asyncio.Queue):
        self._client = client
        self._rid = rid
        self._frames = frames
        self._finished = False  # the END or ERROR frame came (or the channel broke)
        self._closed = False

    def __aiter__(self) -> FrameStream:
        return self

    async def __anext__(self) -> Frame:
        if self._finished or self._closed:
            raise StopAsyncIteration
        frame = await self._frames.get()
        if isinstance(frame, BaseException):
            self._finished = True
            raise frame
        if frame.kind != ITEM:
            self._finished = True
        return frame

    async def aclose(self) -> None:
        """Stop reading: the request no longer counts as ongoing; CANCEL if it had not ended."""
        if self._closed:
            return
        self._closed = True
        self._client.ongoing -= 1
        if not self._finished:
            self._client._cancel(self._rid)
