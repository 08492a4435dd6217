"""Running a replica's sync user code in worker threads, cheaply.

With ``RAY_SERVE_RUN_SYNC_IN_THREADPOOL=1`` a replica runs its deployment's sync methods in a
thread pool, so that one that blocks does not hold up its other requests (Ray Serve's
opt-in; by default they run on the replica's loop); :func:`run_sync` does that with less per
call than ``asyncio.to_thread``: no ``concurrent.futures.Future`` chained to an asyncio one,
and the answers of calls that end close together wake the event loop once.

>>> import asyncio
>>> asyncio.run(run_sync(sum, [1, 2]))
3
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from typing import Any

MAX_THREADS = 32
"""The most worker threads one event loop's pool starts (as the default executor's cap)."""


class _Pool:
    """Worker threads shared by the process's event loops: started as calls need them (at
    most :data:`MAX_THREADS`), kept after."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = 0
        self.idle = 0
        self.lock = threading.Lock()
        # per loop: the answers to set there, (future, ok, value); a loop is here while a
        # flush of it is pending
        self.done: dict[asyncio.AbstractEventLoop, list] = {}

    def submit(self, future: asyncio.Future, fn: Any, args: tuple) -> None:
        with self.lock:
            start = self.idle == 0 and self.threads < MAX_THREADS
            if start:
                self.threads += 1
            elif self.idle > 0:
                self.idle -= 1  # taken by this job (a worker about to wake)
        self.jobs.put((future, contextvars.copy_context(), fn, args))
        if start:
            threading.Thread(target=self._work, daemon=True, name="sluice-serve-sync").start()

    def _work(self) -> None:
        jobs, lock = self.jobs, self.lock
        while True:
            future, context, fn, args = jobs.get()
            try:
                answer = (future, True, context.run(fn, *args))
            except BaseException as exc:  # noqa: BLE001 - the awaiting caller raises it
                if isinstance(exc, StopIteration):  # an asyncio future refuses to hold one
                    exc = RuntimeError(f"{getattr(fn, '__qualname__', fn)} raised StopIteration")
                answer = (future, False, exc)
            loop = future.get_loop()
            with lock:
                self.idle += 1
                pending = self.done.get(loop)
                if pending is None:
                    self.done[loop] = [answer]
                else:
                    pending.append(answer)
            if pending is None:  # else a flush of that loop is on its way
                try:
                    loop.call_soon_threadsafe(self._flush, loop)
                except RuntimeError:  # the loop closed: nobody waits for the answer
                    with lock:
                        self.done.pop(loop, None)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:
            done = self.done.pop(loop, ())
        for future, ok, value in done:
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


_POOL = _Pool()


async def run_sync(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a worker thread (the caller's context variables visible there); its
    result, or its exception raised here. Cancelling the caller stops waiting, not ``fn``."""
    future = asyncio.get_running_loop().create_future()
    _POOL.submit(future, fn, args)
    return await future
