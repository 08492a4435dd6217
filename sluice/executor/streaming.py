"""Streaming generators, the worker's half: send each yielded item the moment it exists.

A streaming call's TASK or ACTOR_CALL message carries ``(threshold, skip, consumed)``
(see :mod:`sluice.executor.generators` for the driver's half). The worker iterates
the call's generator; each item becomes an object of its own (inline, or its shm
segment when large) sent as ``(GEN_ITEM, task_id, index, object_id, spec, contained)``.
The first ``skip`` items are not sent: a retried call already delivered them.
With a ``threshold``, the worker stops asking the generator for more while that many
items are unconsumed (the driver acknowledges each one taken with GEN_ACK). A
CANCEL_TASK for a running stream closes its generator at the next item.

Items are batched like results: the producing thread sends what is waiting once
``FLUSH_INTERVAL`` passed since the last write, so a slow producer's every item goes at
once; a flusher thread sends an item that a burst left waiting while the generator
stalls (within ``FLUSHER_PERIOD``). It wakes rarely, so it seldom takes the GIL from a
fast producer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sluice.exceptions import TaskCancelledError
from sluice.executor import protocol as P

FLUSH_INTERVAL = 0.001
"""An item is never held back longer than this waiting for others to share its write."""

FLUSHER_PERIOD = 0.005
"""How often the flusher thread looks for items left waiting."""

POLL_INTERVAL = 0.0005
"""A generator running on the main thread looks for GEN_ACK and CANCEL_TASK this often."""


class WorkerStreams:
    """The streaming calls running in one worker process. See the module docstring."""

    def __init__(self, worker: Any):
        self.worker = worker
        self.acks: dict[int, int] = {}       # task id -> items the consumer took
        self.cancelled: set[int] = set()
        self.cv = threading.Condition()
        self.running = 0
        self.active = threading.Event()      # set while any stream runs: the flusher works
        self.flusher: threading.Thread | None = None

    # -- messages from the driver (main thread) ------------------------------------
    def on_ack(self, task_id: int, consumed: int) -> None:
        with self.cv:
            if task_id in self.acks and consumed > self.acks[task_id]:
                self.acks[task_id] = consumed
                self.cv.notify_all()

    def on_cancel(self, task_id: int) -> None:
        with self.cv:
            if task_id in self.acks:
                self.cancelled.add(task_id)
                self.cv.notify_all()

    # -- running a stream -----------------------------------------------------------
    def begin(self, task_id: int, consumed: int) -> None:
        with self.cv:
            self.acks[task_id] = consumed
            self.running += 1
        self.active.set()
        if self.flusher is None:
            self.flusher = threading.Thread(target=self._flush_loop, name="sluice-stream-flush",
                                            daemon=True)
            self.flusher.start()

    def end(self, task_id: int) -> None:
        with self.cv:
            self.acks.pop(task_id, None)
            self.cancelled.discard(task_id)
            self.running -= 1
            if not self.running:
                self.active.clear()
        self.worker.flush()

    def run(self, task_id: int, value: Any, stream: tuple, on_main: bool) -> None:
        """Send every item of the generator ``value``; raises its error (or the cancel)."""
        threshold, skip, consumed = stream
        it = _iterate(value)
        self.begin(task_id, consumed)
        try:
            index = 0
            for item in it:
                if index >= skip:
                    self.send(task_id, index, item)
                index += 1
                if on_main:
                    self.poll_pipe()
                if task_id in self.cancelled:
                    _close(it)
                    raise TaskCancelledError(f"task {task_id} was cancelled while streaming")
                if threshold:
                    self.wait_for_room(task_id, index, threshold, on_main)
        finally:
            self.end(task_id)

    async def run_async(self, task_id: int, value: Any, stream: tuple) -> None:
        """:meth:`run` for an async actor's method (an async generator, or a plain one)."""
        import asyncio

        if not hasattr(value, "__aiter__"):
            self.run(task_id, value, stream, False)
            return
        threshold, skip, consumed = stream
        loop = asyncio.get_running_loop()
        self.begin(task_id, consumed)
        try:
            index = 0
            async for item in value:
                if index >= skip:
                    self.send(task_id, index, item)
                index += 1
                if task_id in self.cancelled:
                    await value.aclose()
                    raise TaskCancelledError(f"task {task_id} was cancelled while streaming")
                if threshold and index - self.acks[task_id] >= threshold:
                    self.worker.flush()
                    await loop.run_in_executor(None, self.wait_for_room, task_id, index, threshold,
                                               False)
        finally:
            self.end(task_id)

    def send(self, task_id: int, index: int, item: Any) -> None:
        w = self.worker
        oid = w.new_object_id()
        spec, contained = w.store_value(oid, item)
        with w.send_lock:
            w.outbox.append((P.GEN_ITEM, task_id, index, oid, spec, contained))
        if time.perf_counter() - w.last_flush > FLUSH_INTERVAL:
            w.flush()

    def poll_pipe(self) -> None:
        """On the main thread: apply what the driver sent (acks, cancels) every POLL_INTERVAL."""
        w = self.worker
        now = time.perf_counter()
        if now - w.last_poll > POLL_INTERVAL:
            w.last_poll = now
            if w.conn.poll():
                w.pump(None)

    def wait_for_room(self, task_id: int, index: int, threshold: int, on_main: bool) -> None:
        """Return once fewer than ``threshold`` of the first ``index`` items are unconsumed."""
        w = self.worker
        while index - self.acks.get(task_id, index) >= threshold and task_id not in self.cancelled:
            w.flush()
            if on_main:
                w.pump(None)  # the main thread reads the pipe itself
            else:
                with self.cv:
                    self.cv.wait_for(lambda: index - self.acks.get(task_id, index) < threshold
                                     or task_id in self.cancelled)

    def _flush_loop(self) -> None:
        w = self.worker
        while True:
            self.active.wait()
            time.sleep(FLUSHER_PERIOD)
            if self.running and w.outbox and time.perf_counter() - w.last_flush > FLUSH_INTERVAL:
                w.flush()


def _iterate(value: Any) -> Any:
    try:
        return iter(value)
    except TypeError:
        raise TypeError(f"a call with num_returns=\"streaming\" must return a generator or "
                        f"iterable, not {type(value).__name__}; yield its items, or set "
                        "num_returns to a number") from None


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
