"""Handle calls from sync code straight over a blocking socket, with no event-loop hop.

A handle call from a thread that runs no event loop (the driver, a task) would otherwise go
through the process's background loop: a wake-up of that loop's thread to send, another of
the caller's thread for the answer, and asyncio's machinery between them, which costs more
than the replica's whole round trip. When the deployment's router has a replica with room
(and no request waits in the router), :func:`try_send` instead sends the request on a
:class:`SyncChannel` (one blocking connection per replica, shared by the process's threads)
and :class:`SyncCall` reads its answer in the caller's thread. Anything else (a full
deployment, a streaming call, arguments that are responses still to resolve, a replica that
cannot be reached) takes the loop's path, which queues and retries.

The router counts these calls with its own (:attr:`SyncChannel.in_flight`), so power of two
choices and ``max_ongoing_requests`` see them; the replica counts them as any other request.
"""

from __future__ import annotations

import concurrent.futures
import select
import socket
import threading
import time
from typing import Any

from sluice.libs.serve.channel import (_PREFIX, CALL, CANCEL, LIMIT, ChannelClosed, Frame, decode,
                                       encode, parse_address)


class SyncChannel:
    """A blocking connection to one replica. Any thread may send; the thread that wants an
    answer reads frames (one reader at a time) and leaves the others' answers for them."""

    def __init__(self, address: str):
        self.address = address
        self.broken = False
        self.closing = False  # sends no more; closes once its last answer is read
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._next_id = 0
        self._wanted: set[int] = set()       # requests sent whose answer someone may read
        self._answers: dict[int, Frame] = {}  # answers read, not taken yet
        self._forgotten: list[int] = []       # requests dropped unread (list.append: GC-safe)
        self._reading = False
        self._buffer = bytearray()

    @property
    def in_flight(self) -> int:
        """Requests sent on this channel and not answered (or given up) yet."""
        return max(0, len(self._wanted) - len(self._forgotten))

    def _connect(self) -> socket.socket:
        scheme, where = parse_address(self.address)
        if scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(where)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(where)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def send(self, method: str, body: bytes) -> int:
        """Send one CALL; its request id. Raises ``OSError`` when the replica cannot be
        reached (nothing was sent: the caller may send it elsewhere)."""
        if self._forgotten:
            self._reap()
        with self._send_lock:
            if self.broken or self.closing:
                raise ConnectionError(f"the channel to {self.address} broke or is closing")
            if self._sock is None:
                self._sock = self._connect()
            elif not self._wanted and _ended(self._sock):  # the replica went away meanwhile
                self._break()
                raise ConnectionError(f"the replica at {self.address} closed its channel")
            self._next_id += 1
            rid = self._next_id
            self._wanted.add(rid)
            try:
                self._sock.sendall(encode(Frame(rid, CALL, method, b"", body)))
            except OSError:
                self._wanted.discard(rid)
                self._break()
                raise
            return rid

    def cancel(self, rid: int) -> None:
        """Give up on ``rid``: the replica cancels it (its answer is dropped if it comes)."""
        self.forget(rid)
        with self._send_lock:
            if self._sock is not None and not self.broken:
                try:
                    self._sock.sendall(encode(Frame(rid, CANCEL, "", b"", b"")))
                except OSError:
                    self._break()

    def forget(self, rid: int) -> None:
        """Nobody will read ``rid``'s answer (safe from a finalizer: takes no lock)."""
        self._forgotten.append(rid)

    def answer(self, rid: int, timeout: float | None) -> Frame:
        """The answer to ``rid`` (TimeoutError after ``timeout`` seconds, ChannelClosed if the
        connection broke first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                self._drop_forgotten()
                frame = self._answers.pop(rid, None)
                if frame is not None:
                    self._wanted.discard(rid)
                    last = self.closing and not self._wanted
                elif self.broken:
                    self._wanted.discard(rid)
                    raise ChannelClosed(f"the connection to replica {self.address} broke")
                elif self._reading:  # another thread reads: it hands our answer over
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError
                    self._cond.wait(left)
                    continue
                else:
                    self._reading = True
            if frame is not None:
                if last:  # closed meanwhile: the last answer is in (the lock is not held)
                    self._shut()
                return frame
            read = None
            try:
                read = self._read_frame(deadline)
            finally:
                with self._cond:
                    self._reading = False
                    if read is not None and read.request_id in self._wanted:
                        self._answers[read.request_id] = read
                    self._cond.notify_all()

    def _reap(self) -> None:
        """Read the answers already here when no thread reads (those of calls dropped unread
        would otherwise pile up in the socket, and on the replica behind it)."""
        with self._cond:
            if self._reading or self._sock is None or self.broken:
                return
            self._drop_forgotten()
            self._reading = True
        read: list[Frame] = []
        try:
            while True:
                frame = self._read_frame(time.monotonic())
                if frame is None:
                    break
                read.append(frame)
        except TimeoutError:
            pass  # nothing more to read now
        finally:
            with self._cond:
                self._reading = False
                for frame in read:
                    if frame.request_id in self._wanted:
                        self._answers[frame.request_id] = frame
                self._drop_forgotten()
                self._cond.notify_all()

    def _drop_forgotten(self) -> None:
        while self._forgotten:
            rid = self._forgotten.pop()
            self._wanted.discard(rid)
            self._answers.pop(rid, None)

    def _read_frame(self, deadline: float | None) -> Frame | None:
        """One whole frame from the socket: TimeoutError when the deadline passes first; None
        once the connection ended (the channel is then broken)."""
        buffer, sock = self._buffer, self._sock
        assert sock is not None  # sent on before any answer is read
        while True:
            if len(buffer) >= 4:
                (size,) = _PREFIX.unpack_from(buffer)
                if size >= LIMIT:
                    self._break()
                    return None
                if len(buffer) >= 4 + size:
                    frame = decode(bytes(buffer[4:4 + size]))
                    del buffer[:4 + size]
                    return frame
            if deadline is not None:  # (a deadline already passed still reads what is there)
                left = max(0.0, deadline - time.monotonic())
                if not select.select([sock], [], [], left)[0]:
                    raise TimeoutError
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                self._break()
                return None
            buffer += data

    def _break(self) -> None:
        self.broken = True
        with self._cond:
            self._cond.notify_all()

    def __del__(self) -> None:
        sock = self._sock
        if sock is not None:
            sock.close()

    def close(self, now: bool = False) -> None:
        """Send no more; close the connection once the answers of the calls sent on it are
        read (``now``: at once, those calls fail with ChannelClosed)."""
        with self._send_lock:  # (a send in progress finishes first, and is waited for)
            self.closing = True
            if not now:
                with self._cond:
                    self._drop_forgotten()
                    if self._wanted:
                        return  # the thread that reads the last answer closes it
        self._shut()

    def _shut(self) -> None:
        self._break()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _ended(sock: socket.socket) -> bool:
    """Whether the peer closed ``sock`` (readable, and nothing left to read)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class SyncCall:
    """One call sent on a :class:`SyncChannel`; :meth:`result` reads its answer."""

    __slots__ = ("channel", "rid", "on_broken", "on_done", "_outcome", "__weakref__")

    def __init__(self, channel: SyncChannel, rid: int, on_broken: Any,
                 on_done: Any = None):
        self.channel = channel
        self.rid = rid
        self.on_broken = on_broken  # called once the channel is known broken
        self.on_done = on_done  # called once the call no longer holds a slot of the replica
        self._outcome: tuple[bool, Any] | None = None  # (ok, value or error), once read

    def frame(self, timeout: float | None) -> Frame:
        """The answer frame (raises what :meth:`SyncChannel.answer` raises)."""
        try:
            return self.channel.answer(self.rid, timeout)
        except ChannelClosed:
            self.on_broken()
            raise

    def outcome(self, decode_answer: Any, timeout: float | None) -> Any:
        """The call's value (``decode_answer(frame)``), read once and kept."""
        if self._outcome is None:
            try:
                self._outcome = (True, decode_answer(self.frame(timeout)))
            except TimeoutError:
                raise
            except BaseException as exc:  # noqa: BLE001 - kept, raised on every result()
                self._outcome = (False, exc)
            self._done()
        ok, value = self._outcome
        if ok:
            return value
        raise value

    def cancel(self) -> None:
        """Stop waiting; the replica cancels the request."""
        if self._outcome is None:
            self._outcome = (False, concurrent.futures.CancelledError())
            self.channel.cancel(self.rid)
            self._done()

    def _done(self) -> None:
        if self.on_done is not None:
            self.on_done()

    def __del__(self) -> None:
        if self._outcome is None:  # dropped unread: its answer is not kept for anyone
            self.channel.forget(self.rid)
            self._done()
