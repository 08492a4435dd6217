"""Streaming generators, the driver's half: a generator task's items as they arrive.

A call with ``num_returns="streaming"`` (the default for generator functions and
methods, as in Ray) has one declared result, the *generator id*: ready when the
call ends (its value None), or failed with the call's error. The worker sends
each yielded value as its own object the moment it is yielded, in a
``(GEN_ITEM, task_id, index, object_id, spec, contained)`` message; the object id
is the worker's own (so a large value goes to its shm segment as usual). The
scheduler keeps a :class:`Stream` per call, holding one reference on each item
that arrived and was not consumed yet; :class:`ObjectRefGenerator` hands them out
in order, then, if the call failed, the generator id itself (its ``get`` raises
the error, after the good items), then stops.

Backpressure (``_generator_backpressure_num_objects=N``): each item consumed is
acknowledged to the worker with ``(GEN_ACK, task_id, consumed)``; the worker stops
asking its generator for more while N items are unconsumed.

Retries: a retried call (worker crash, or ``retry_exceptions``) is told how many
items already arrived, and its worker drops that many from the start of the new
run (Ray's rule: generators are assumed deterministic); an index that arrived
before is dropped here too.

A consumer in another process (a task or actor iterating a generator it started, or
a driver connected to a cluster: a :class:`~sluice.executor.worker_api.WorkerAPI`)
asks for items with ``(GEN_NEXT, req_id, generator id, 0)``, answered with
``(LOOKUP_REPLY, req_id, ([(object id, inline spec | None), ...], ended))`` as soon
as an item (or the end) is there: every item there by then (one at a time for a call
with backpressure, so that handing out still means consumed), small values included
so that ``get`` needs no second trip. Meanwhile the consumer counts as blocked, as in
a nested get. A ``GEN_NEXT`` with 1 for its last field gives up on request
``req_id`` (its timeout passed): it is answered ``([], False)`` unless answered
already. The stream holds the items it handed out until the consumer says
``(GEN_TAKEN, generator id, [object ids])``, after the INCREFs of its own refs;
``(GEN_CLOSE, generator id)`` closes the stream, as does the consumer's death.
"""

from __future__ import annotations

import threading
from typing import Any

from sluice.executor import protocol as P
from sluice.executor.object_ref import ObjectRef
from sluice.executor.records import PENDING, TaskRecord, Waiter, WorkerHandle

NO_LIMIT = 1 << 62
"""An acknowledgement that lets a producer run to its end (its generator was dropped)."""

BATCH_ITEMS = 256
"""Items one answer to a consumer in another process carries at most (no backpressure)."""

BATCH_BYTES = 1 << 20
"""Inline values one such answer carries: past this many bytes, the rest wait for the next."""


def refuse_streaming(options: dict, what: str, where: str) -> None:
    """Raise for a streaming generator call where this backend cannot stream it."""
    if options["num_returns"] == "streaming":
        raise NotImplementedError(
            f"{what} is a streaming generator (num_returns=\"streaming\"), which sluice streams "
            f"on its own runtime and clusters only, not {where}; use sluice.init() without "
            f"backend='dask', or set num_returns=N for a generator of N items")


class Stream:
    """One streaming call's items, under the scheduler's lock (plain data)."""

    __slots__ = ("task", "threshold", "items", "consumed", "event", "error_given", "closed",
                 "consumer", "waiting", "handed")

    def __init__(self, task: TaskRecord, threshold: int | None, consumer: WorkerHandle | None):
        self.task = task
        self.threshold = threshold or 0     # unconsumed items that pause the producer (0: none)
        self.items: list[int | None] = []   # object ids in yield order; None once handed out
        self.consumed = 0                   # items handed to the consumer
        self.event = threading.Event()      # set when an item arrives or the call ends
        self.error_given = False            # the failed generator id was handed out
        self.closed = False                 # the consumer dropped its generator
        # A consumer in another process (None: the driver's own threads, which wait on event).
        self.consumer = consumer
        self.waiting: list[int] = []        # its GEN_NEXT requests not answered yet, in order
        self.handed: set[int] = set()       # items sent to it whose GEN_TAKEN has not come yet

    def dispatch_field(self) -> tuple[int, int, int]:
        """What a TASK or ACTOR_CALL message says of it: ``(threshold, skip, consumed)``."""
        return (self.threshold, len(self.items), self.consumed)


class _EndOfCall:
    """A Waiter's event for a stream with a consumer in another process: the call's end
    answers the requests it has waiting (called under the scheduler's lock)."""

    __slots__ = ("table", "stream")

    def __init__(self, table: StreamTable, stream: Stream):
        self.table = table
        self.stream = stream

    def set(self) -> None:
        self.table.answer_stream(self.stream)


class StreamTable:
    """The stream half of the scheduler (a mixin of
    :class:`~sluice.executor.scheduler.Scheduler`, sharing its state and lock)."""

    __slots__ = ()  # the state is the scheduler's (its ``streams``)

    def open_stream(self, task: TaskRecord, threshold: int | None,
                    consumer: WorkerHandle | None = None) -> Stream:
        """Track ``task``'s items; call before it is submitted. ``consumer``: the process
        that iterates it, if not the driver's own threads."""
        st = task.stream = Stream(task, threshold, consumer)
        self.streams[task.return_ids[0]] = st
        return st

    def watch_stream_end(self, task: TaskRecord) -> None:
        """Wake the stream's consumer when its call ends (after ``submit`` made the entry)."""
        st = task.stream
        entry = self.objects.get(task.return_ids[0])
        if entry is not None and entry.state == PENDING:
            entry.waiters.append(Waiter(1, st.event if st.consumer is None else _EndOfCall(self, st)))
        else:
            st.event.set()

    def stream_item(self, w: WorkerHandle, task_id: int, index: int, oid: int,
                    spec: tuple, contained: tuple) -> None:
        """Item ``index`` of call ``task_id`` arrived as object ``oid``."""
        task = w.inflight.get(task_id)
        st = task.stream if task is not None else None
        if task is None or st is None or st.closed or task.cancelled or index != len(st.items):
            self.add_object(oid, spec, contained, stored_by=w)  # no entry: freed at once
            return
        self.new_entry(oid, None).refs += 1   # the stream's hold until it is consumed
        self.add_object(oid, spec, contained, stored_by=w)
        st.items.append(oid)
        if st.waiting:
            self.answer_stream(st)
        elif not st.event.is_set():  # set until the consumer next waits: once per batch
            st.event.set()

    def take_stream_item(self, gid: int) -> tuple[int | None, bool]:
        """``(object id, False)`` of the next item; ``(None, True)`` at the end (the generator
        id itself first if the call failed); ``(None, False)`` when none arrived yet.

        The caller makes its ObjectRef for an item, then drops the stream's hold on it
        (``ref_events.append((-1, oid))``) unless the id is ``gid`` itself."""
        st = self.streams.get(gid)
        if st is None:
            return None, True
        if st.consumed < len(st.items):
            oid = st.items[st.consumed]
            st.items[st.consumed] = None
            st.consumed += 1  # the caller makes its ref, then drops the stream's hold
            task = st.task
            w = task.worker
            if st.threshold and w is not None and w.alive:
                w.out.append((P.GEN_ACK, task.task_id, st.consumed))
                self.send(w)
            return oid, False
        st.event.clear()
        entry = self.objects.get(gid)
        if entry is None or entry.state != PENDING:
            if entry is not None and entry.spec is not None and entry.spec[0] == P.DEP_ERROR \
                    and not st.error_given:
                st.error_given = True
                return gid, False
            return None, True
        return None, False

    def stream_ready(self, gid: int) -> bool:
        """Whether ``next`` on the stream would return at once (an item, or its end)."""
        st = self.streams.get(gid)
        if st is None or st.consumed < len(st.items):
            return True
        entry = self.objects.get(gid)
        return entry is None or entry.state != PENDING

    def stream_finished(self, gid: int) -> bool:
        """Whether streaming call ``gid`` ended and its every item (and error) was taken."""
        st = self.streams.get(gid)
        if st is None:
            return True
        entry = self.objects.get(gid)
        if entry is not None and entry.state == PENDING or st.consumed < len(st.items):
            return False
        return entry is None or entry.spec[0] != P.DEP_ERROR or st.error_given

    # -- a consumer in another process (GEN_NEXT, GEN_TAKEN, GEN_CLOSE) ----------------
    def stream_request(self, w: WorkerHandle, req_id: int, gid: int, give_up: bool) -> None:
        """``w`` asks for the next items of ``gid`` (answered when one is there), or gives
        up on its request ``req_id`` (answered now, with nothing, unless answered already)."""
        st = self.streams.get(gid)
        if give_up:
            if st is not None and req_id in st.waiting and st.consumer is w:
                st.waiting.remove(req_id)
                self.reply_stream(w, req_id, [], False, True)
            return
        if st is not None and st.consumer is w and (st.waiting or not self.stream_ready(gid)):
            st.waiting.append(req_id)  # behind any earlier request, in order
            self.block_worker(w)
            return
        items, ended = self.hand_out(gid)
        self.reply_stream(w, req_id, items, ended, False)

    def answer_stream(self, st: Stream) -> None:
        """Answer the consumer's waiting requests that can be now (items, or the end)."""
        gid = st.task.return_ids[0]
        while st.waiting and self.streams.get(gid) is st:
            items, ended = self.hand_out(gid)
            if not items and not ended:
                return
            self.reply_stream(st.consumer, st.waiting.pop(0), items, ended, True)

    def hand_out(self, gid: int) -> tuple[list[tuple[int, tuple | None]], bool]:
        """The items there now for a consumer in another process, each ``(object id, its
        inline spec or None)``, and whether the stream ended. One item when the call has
        backpressure (each handed out counts as consumed); else up to BATCH_ITEMS."""
        st = self.streams.get(gid)
        limit = 1 if st is None or st.threshold else BATCH_ITEMS
        items: list[tuple[int, tuple | None]] = []
        nbytes = 0
        while len(items) < limit and nbytes < BATCH_BYTES:
            oid, ended = self.take_stream_item(gid)
            if oid is None:
                return items, ended
            spec = None
            if oid != gid:
                st.handed.add(oid)  # held until its GEN_TAKEN
                entry = self.objects.get(oid)
                if entry is not None and entry.spec is not None and entry.spec[0] == P.DEP_INLINE:
                    spec = entry.spec  # its value travels along: the consumer's get needs no trip
                    nbytes += len(spec[1])
            items.append((oid, spec))
        return items, False

    def reply_stream(self, w: WorkerHandle, req_id: int, items: list, ended: bool,
                     blocked: bool) -> None:
        if not w.alive:
            return
        w.out.append((P.LOOKUP_REPLY, req_id, (items, ended)))
        if blocked:
            self.unblock_worker(w)
        self.send(w)

    def stream_taken(self, gid: int, oids: list[int]) -> None:
        """The consumer holds its own refs to items ``oids`` now: drop the stream's holds."""
        st = self.streams.get(gid)
        if st is not None:
            for oid in oids:
                if oid in st.handed:
                    st.handed.discard(oid)
                    self.ref_events.append((-1, oid))

    def consumer_gone(self, w: WorkerHandle) -> None:
        """Process ``w`` died or disconnected: close the streams it consumed."""
        if self.streams:
            for gid in [gid for gid, st in self.streams.items() if st.consumer is w]:
                self.close_stream(gid)

    def close_stream(self, gid: int) -> None:
        """The consumer dropped its generator: release the items it never took."""
        st = self.streams.pop(gid, None)
        if st is None:
            return
        st.closed = True
        for oid in st.items[st.consumed:]:
            self.ref_events.append((-1, oid))
        for oid in st.handed:  # sent, but the consumer never said it took them
            self.ref_events.append((-1, oid))
        st.items, st.handed, st.waiting = [], set(), []
        st.consumed = NO_LIMIT  # a producer started (or retried) later never pauses either
        task = st.task
        w = task.worker
        if st.threshold and w is not None and w.alive:  # never leave a producer paused
            w.out.append((P.GEN_ACK, task.task_id, NO_LIMIT))
            self.send(w)


class ObjectRefGenerator:
    """The result of a streaming call: iterate it for one ObjectRef per yielded item.

    ``for ref in gen: sluice.get(ref)`` sees each item as soon as the call yields it;
    ``next(gen)`` raises StopIteration at the end, and ``async for`` works too. If the
    call fails, the ref after the last good item raises its error at ``get``.
    ``sluice.cancel(gen)`` stops the producer; ``sluice.wait([gen])`` counts it ready
    when ``next`` would not block. Like Ray's, it cannot be passed to other tasks: it is
    iterated where the call was made (a driver, local or connected to a cluster, or a task
    or actor, which ask the scheduler for each item).
    """

    __slots__ = ("_ref", "_runtime", "__weakref__")

    def __init__(self, ref: ObjectRef, runtime: Any):
        self._ref = ref          # the generator id: keeps the call's entry alive
        self._runtime = runtime

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._runtime.stream_next(self._ref.id, None)
        if ref is None:
            raise StopIteration
        return ref

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef:
        """The next ref, waiting at most ``timeout_s``; StopIteration at the end (Ray's name).
        Raises :class:`~sluice.exceptions.GetTimeoutError` when none came in time."""
        ref = self._runtime.stream_next(self._ref.id, timeout_s)
        if ref is None:
            raise StopIteration
        return ref

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        import asyncio

        loop = asyncio.get_running_loop()
        ref = await loop.run_in_executor(None, self._runtime.stream_next, self._ref.id, None)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def completed(self) -> ObjectRef:
        """A ref that is ready when the call has ended (its get raises the call's error)."""
        return self._ref

    def is_finished(self) -> bool:
        """Whether the call ended and every item was taken."""
        return self._runtime.stream_finished(self._ref.id)

    def __del__(self) -> None:
        rt = self._runtime
        if rt is not None:
            try:
                rt.stream_close(self._ref.id)
            except Exception:  # interpreter shutdown, or the runtime is gone
                pass

    def __reduce__(self) -> Any:
        raise TypeError("an ObjectRefGenerator cannot be passed to a task or stored (as in Ray); "
                        "iterate it here and pass the item refs")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._ref!r})"
