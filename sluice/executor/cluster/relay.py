"""The head's ends of processes that live elsewhere: worker pipes relayed over gRPC.

The head's scheduler is the local runtime's scheduler; it talks to a worker
through ``w.conn.send_bytes`` and looks at ``w.proc``. For a worker on a node
(or a connected driver) those are these stand-ins: bytes go into the gRPC
stream of its node (or driver), and the process's exit code arrives as a
control message from the node daemon that started it.
"""

from __future__ import annotations

import pickle
import queue
import signal
from typing import Any

from sluice.executor.cluster import cluster_pb2 as pb

MAX_FRAMES = 512


class Outbox:
    """Frames for one gRPC stream (a node's or a driver's), in order."""

    def __init__(self) -> None:
        self.frames: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False

    def send(self, worker: int, payload: bytes) -> None:
        if self.closed:
            raise BrokenPipeError("the stream is closed")
        self.frames.put(pb.Frame(worker=worker, payload=payload))

    def control(self, msg: tuple) -> None:
        """A message to the node daemon (or driver) itself, not to one of its workers."""
        self.send(0, pickle.dumps(msg, protocol=5))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.frames.put(None)

    def __iter__(self):
        """The stream's messages for gRPC: every frame queued by then, together; ends at :meth:`close`."""
        frames = self.frames
        while True:
            first = frames.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_FRAMES:
                try:
                    more = frames.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    yield pb.Frames(frames=batch)
                    return
                batch.append(more)
            yield pb.Frames(frames=batch)


class RelayConn:
    """The head's end of a remote process's pipe (``send_bytes``/``close`` only)."""

    __slots__ = ("closed", "index", "outbox")

    def __init__(self, outbox: Outbox, index: int):
        self.outbox = outbox
        self.index = index
        self.closed = False

    def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise BrokenPipeError(f"worker {self.index} is gone")
        self.outbox.send(self.index, data)

    def close(self) -> None:
        self.closed = True


class RemoteProc:
    """A worker process on a node, as far as the head can see and steer it."""

    pid = None  # (it runs on its node: the head does not know its pid)

    def __init__(self, outbox: Outbox | None, index: int):
        self.outbox = outbox
        self.index = index
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode  # the exit was reported before the head handles the death

    def send_signal(self, sig: int) -> None:
        if self.outbox is not None and self.returncode is None and not self.outbox.closed:
            self.outbox.control(("signal", self.index, int(sig)))

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def frames_of(stream: Any) -> Any:
    """The frames of a stream of :class:`pb.Frames` messages, one at a time."""
    for message in stream:
        yield from message.frames


def unpack_control(payload: bytes) -> Any:
    return pickle.loads(payload)
