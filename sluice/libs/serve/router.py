"""Routing requests to a deployment's replicas over direct channels.

A :class:`Router` (one per deployment and event loop) keeps one ChannelClient per replica and
sends each request to the less loaded of two replicas picked at random (power of two
choices), never past ``max_ongoing_requests`` on one replica: beyond that, requests wait in a
FIFO queue, and past ``max_queued_requests`` waiting they fail with :class:`BackPressureError`.
A replica whose channel broke is dropped at once and never routed to again; a request that
could not be sent to it goes to another replica.

>>> ReplicaInfo("app#M#1", "unix:/tmp/r.sock").max_ongoing_requests
5
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sluice.libs.serve.channel import ChannelClient, ChannelClosed, Frame, FrameStream
from sluice.libs.serve.syncchannel import SyncChannel


@dataclass(frozen=True)
class ReplicaInfo:
    """Where a running replica listens, and its deployment's limits (plain data)."""

    replica_id: str
    address: str
    node_id: str = ""
    max_ongoing_requests: int = 5
    max_queued_requests: int = -1
    metrics_interval_s: float = 0.0
    """How often callers report the requests they queue for the deployment to the
    controller (its ``autoscaling_config.metrics_interval_s``; 0: it does not autoscale)."""


class BackPressureError(RuntimeError):
    """More requests wait for a deployment's replicas than its ``max_queued_requests`` allows
    (Ray Serve's name); retry later, or raise max_queued_requests / add replicas."""


class _Replica:
    """A replica as the router sees it: its channel and the requests it routed there."""

    __slots__ = ("info", "client", "ongoing", "sync")

    def __init__(self, info: ReplicaInfo):
        self.info = info
        self.client = ChannelClient(info.address)
        self.ongoing = 0  # requests routed on the loop (changed on the loop only)
        self.sync: SyncChannel | None = None  # sync threads' channel, made on first use

    @property
    def load(self) -> int:
        """Requests this process has on the replica now (the loop's and sync threads')."""
        sync = self.sync
        return self.ongoing + (sync.in_flight if sync is not None else 0)

    def close(self, now: bool = False) -> None:
        """Close its channels (``now``: the sync one even with calls in flight)."""
        self.client.close()
        if self.sync is not None:
            self.sync.close(now)


class Router:
    """Sends a deployment's requests to its replicas (all on the event loop it is used on).

    ``update(replicas)`` sets the membership (from the controller's long poll);
    :meth:`call` and :meth:`stream` send one request.
    """

    def __init__(self, deployment_id: str, max_ongoing_requests: int = 5,
                 max_queued_requests: int = -1):
        self.deployment_id = deployment_id
        self.max_ongoing_requests = max_ongoing_requests
        self.max_queued_requests = max_queued_requests
        self.metrics_interval_s = 0.0  # (from the replicas' ReplicaInfo)
        self.replicas: dict[str, _Replica] = {}
        self.dead: set[str] = set()  # replica ids whose channel broke: never routed to again
        self.error: BaseException | None = None  # set: every call fails with it (app deleted)
        self._retiring: dict[str, _Replica] = {}  # left the membership, requests still on them
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        # Held by the loop from its last look for room to queueing a waiter, and by a sync
        # thread (sync_done) from freeing a slot to looking for waiters: one of them sees the
        # other, so a waiter never sleeps through a slot that a sync call freed.
        self._sync_lock = threading.RLock()
        self._choices = list(self.replicas.values())

    def update(self, replicas: list[ReplicaInfo]) -> None:
        """Route to exactly ``replicas`` from now on (those known dead excepted)."""
        fresh: dict[str, _Replica] = {}
        for info in replicas:
            if info.replica_id in self.dead:
                continue
            self.max_ongoing_requests = info.max_ongoing_requests
            self.max_queued_requests = info.max_queued_requests
            self.metrics_interval_s = info.metrics_interval_s
            known = self.replicas.get(info.replica_id)
            fresh[info.replica_id] = known if known is not None else _Replica(info)
        for rid, rep in self.replicas.items():
            if rid not in fresh:
                self._retire(rep)
        for rid, rep in list(self._retiring.items()):  # (those only sync threads used)
            if rep.load == 0:
                del self._retiring[rid]
                rep.close()
        self.replicas = fresh
        self._choices = list(fresh.values())
        self._wake(len(self._waiters))

    def fail(self, error: BaseException) -> None:
        """Fail every waiting and future request with ``error`` (the deployment is gone)."""
        self.error = error
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _retire(self, rep: _Replica) -> None:
        if rep.load == 0:
            rep.close()
        else:
            self._retiring[rep.info.replica_id] = rep

    def _drop(self, rep: _Replica) -> None:
        """``rep``'s channel broke: never route to it again."""
        rid = rep.info.replica_id
        self.dead.add(rid)
        if self.replicas.pop(rid, None) is not None:
            self._choices = list(self.replicas.values())
        if rep.sync is not None:
            rep.sync.close(now=True)

    def _pick(self) -> _Replica | None:
        choices, limit = self._choices, self.max_ongoing_requests
        if len(choices) == 1:
            rep = choices[0]
            if rep.client.closed:
                self._drop(rep)
                return None
            return rep if rep.load < limit else None
        if not choices:
            return None
        a, b = random.sample(choices, 2)
        if a.client.closed or b.client.closed:  # a replica died: forget it, choose again
            for rep in (a, b):
                if rep.client.closed:
                    self._drop(rep)
            return self._pick()
        best = a if a.load <= b.load else b
        if best.load < limit:
            return best
        open_ = [r for r in choices if r.load < limit and not r.client.closed]
        return min(open_, key=lambda r: r.load) if open_ else None

    def pick_for_sync(self) -> _Replica | None:
        """A replica with room for a call from a thread that runs no loop (see
        :mod:`sluice.libs.serve.syncchannel`), or None to take the loop's path (no room, a
        request already waits here, or the deployment is gone). Safe from any thread: it
        reads the router's state and changes nothing."""
        if self.error is not None or self._waiters:
            return None
        choices = self._choices
        if len(choices) == 1:
            rep = choices[0]
        elif choices:
            a, b = random.sample(choices, 2)
            rep = a if a.load <= b.load else b
        else:
            return None
        sync = rep.sync
        if rep.client.closed or (sync is not None and (sync.broken or sync.closing)) \
                or rep.load >= self.max_ongoing_requests:
            return None
        return rep

    def sync_done(self, loop: asyncio.AbstractEventLoop) -> None:
        """A sync thread's call on one of the replicas ended (its slot is free): wake a
        request waiting here for room, if any (from any thread; ``loop`` is this router's)."""
        with self._sync_lock:
            if not self._waiters:
                return
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, 1)

    async def _acquire(self) -> _Replica:
        if self.error is not None:
            raise self.error
        rep = self._pick() if not self._waiters else None
        while rep is None:
            if 0 <= self.max_queued_requests <= len(self._waiters):
                raise BackPressureError(
                    f"deployment {self.deployment_id!r}: {len(self._waiters)} requests already "
                    f"wait for a replica (max_queued_requests={self.max_queued_requests}); "
                    "retry later, or raise max_queued_requests or the number of replicas")
            with self._sync_lock:  # (see sync_done) a last look for room, then queue
                if not self._waiters:
                    rep = self._pick()
                if rep is None:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
            if rep is not None:
                break
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake(1)  # pass the turn it was given on
                raise
            rep = self._pick()
        rep.ongoing += 1
        return rep

    def _release(self, rep: _Replica) -> None:
        rep.ongoing -= 1
        if rep.load == 0 and self._retiring.pop(rep.info.replica_id, None) is not None:
            rep.close()
        if self._waiters:
            self._wake(1)

    def _wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    async def _connected(self) -> _Replica:
        """A replica to send to, connected; one that cannot be reached is dropped."""
        while True:
            rep = await self._acquire()
            if rep.client._writer is not None:  # connected: the hot path
                return rep
            try:
                await rep.client._connect()
                return rep
            except ChannelClosed:
                self._drop(rep)
                self._release(rep)

    async def call(self, kind: int, method: str, meta: bytes, body: bytes) -> Frame:
        """Send one request to a replica; its answer (an OK or ERROR frame)."""
        rep = await self._connected()
        try:
            return await rep.client.call(kind, method, meta, body)
        except ChannelClosed:
            self._drop(rep)
            raise
        finally:
            self._release(rep)

    async def open(self, kind: int, method: str, meta: bytes, body: bytes
                   ) -> tuple[Frame, RoutedStream | None]:
        """Send one request answered by one frame or a stream (an HTTP request): its first
        frame and, when that is an ITEM, the frames after it (``aclose()`` them when done:
        the replica's slot is held until then). See ``ChannelClient.open``."""
        rep = await self._connected()
        try:
            first, rest = await rep.client.open(kind, method, meta, body)
        except ChannelClosed:
            self._drop(rep)
            self._release(rep)
            raise
        except BaseException:
            self._release(rep)
            raise
        if rest is None:
            self._release(rep)
            return first, None
        return first, RoutedStream(self, rep, rest)

    async def stream(self, kind: int, method: str, meta: bytes, body: bytes
                     ) -> AsyncIterator[Frame]:
        """Send one streaming request; its ITEM frames, then its END or ERROR frame."""
        rep = await self._connected()
        try:
            async for frame in rep.client.stream(kind, method, meta, body):
                yield frame
        except ChannelClosed:
            self._drop(rep)
            raise
        finally:
            self._release(rep)

    @property
    def num_queued(self) -> int:
        """Requests waiting for a replica (none has room under max_ongoing_requests)."""
        return len(self._waiters)

    def close(self) -> None:
        """Close every channel (the process or loop stops using this deployment)."""
        for rep in [*self.replicas.values(), *self._retiring.values()]:
            rep.close(now=True)
        self.replicas, self._retiring, self._choices = {}, {}, []


class RoutedStream:
    """A streamed answer's frames after its first (:meth:`Router.open`); ``aclose()``
    releases the replica's slot (and cancels the request if it had not ended)."""

    __slots__ = ("_router", "_rep", "_frames")

    def __init__(self, router: Router, rep: _Replica, frames: FrameStream):
        self._router = router
        self._rep: _Replica | None = rep
        self._frames = frames

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self._frames.__anext__()
        except ChannelClosed:
            if self._rep is not None:
                self._router._drop(self._rep)
            raise

    async def aclose(self) -> None:
        """Stop reading the answer; the replica's slot is free again."""
        rep, self._rep = self._rep, None
        if rep is not None:
            await self._frames.aclose()
            self._router._release(rep)
