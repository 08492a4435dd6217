"""Streaming generators iterated in a process other than the scheduler's: a task, an
actor, or a driver connected to a cluster (any :class:`~sluice.executor.worker_api.WorkerAPI`).

Each ``next`` that finds nothing fetched asks the scheduler with GEN_NEXT and gets
every item there by then (see :mod:`sluice.executor.generators` for the scheduler's
half and the messages). The refs of a batch are made at once, and one GEN_TAKEN lets
the scheduler drop its holds on them; ``next`` hands them out in order. Small values
come with their ids and are kept in :attr:`StreamConsumer.values` for ``get``, which
then needs no trip (bounded: an evicted value is simply asked for).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

from sluice.exceptions import GetTimeoutError
from sluice.executor import protocol as P
from sluice.executor.object_ref import ObjectRef

VALUES_MAX_BYTES = 8 << 20
"""Inline item values kept for ``get`` at most; the oldest go first past it."""


class _Fetched:
    """One generator's items fetched and not handed out yet (plain data)."""

    __slots__ = ("lock", "refs", "ended")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one request in flight per generator: items stay in order
        self.refs: deque[ObjectRef] = deque()
        self.ended = False            # the scheduler said the stream ended: no more requests


class StreamConsumer:
    """The generators a WorkerAPI iterates. See the module docstring."""

    def __init__(self, api: Any):
        self.api = api
        self.fetched: dict[int, _Fetched] = {}
        self.values: OrderedDict[int, tuple] = OrderedDict()  # item id -> inline spec
        self.value_bytes = 0
        self.values_lock = threading.Lock()
        self.closed: deque[int] = deque()  # generators dropped (any thread, even in GC)

    def next(self, gid: int, timeout: float | None) -> ObjectRef | None:
        """The next item's ref of streaming call ``gid``; None at the end. Raises
        GetTimeoutError when none came within ``timeout`` seconds."""
        f = self.fetched.get(gid)
        if f is None:
            f = self.fetched.setdefault(gid, _Fetched())
        with f.lock:
            if not f.refs and not f.ended:
                self.fetch(gid, f, timeout)
            return f.refs.popleft() if f.refs else None

    def fetch(self, gid: int, f: _Fetched, timeout: float | None) -> None:
        api = self.api
        req = next(api.req_ids)
        api.emit((P.GEN_NEXT, req, gid, 0))
        try:
            items, ended = api.await_reply(req, timeout)
        except GetTimeoutError:
            api.emit((P.GEN_NEXT, req, gid, 1))  # answered now: nothing, or what came meanwhile
            items, ended = api.await_reply(req, None)
            if not items and not ended:
                raise GetTimeoutError(f"no item of the generator came within {timeout}s; raise "
                                      "the timeout, or wait([gen]) for it") from None
        f.ended = ended
        taken = []
        for oid, spec in items:
            f.refs.append(ObjectRef(oid, api))
            if oid != gid:
                taken.append(oid)
            if spec is not None:
                self.keep_value(oid, spec)
        if taken:  # after the INCREFs of these refs, the scheduler may drop its holds
            with api.send_lock:
                api._drain_ref_events()
                api.outbox.append((P.GEN_TAKEN, gid, taken))

    def keep_value(self, oid: int, spec: tuple) -> None:
        values = self.values
        with self.values_lock:
            values[oid] = spec
            self.value_bytes += len(spec[1])
            while self.value_bytes > VALUES_MAX_BYTES and values:
                _, old = values.popitem(last=False)
                self.value_bytes -= len(old[1])

    def has_items(self, gid: int) -> bool:
        """Whether items of ``gid`` were fetched and not handed out yet."""
        f = self.fetched.get(gid)
        return f is not None and bool(f.refs)

    def close(self, gid: int) -> None:
        """The generator was dropped: its fetched refs go, the scheduler hears with the next batch."""
        self.fetched.pop(gid, None)
        self.closed.append(gid)

    def drain_closed(self, outbox: list) -> None:
        """GEN_CLOSE for the generators dropped since the last batch (under the send lock)."""
        closed = self.closed
        while closed:
            outbox.append((P.GEN_CLOSE, closed.popleft()))
