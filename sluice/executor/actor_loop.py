"""Async actors: ``async def`` methods run concurrently on one event loop thread."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any

from sluice.executor import protocol as P


class ActorLoop:
    """An event loop in its own thread that runs an async actor's calls.

    At most ``max_concurrency`` calls are in progress at once (Ray's default for
    async actors is 1000). A plain ``def`` method of an async actor runs on the
    loop too, blocking it while it runs, as in Ray.
    """

    def __init__(self, worker: Any, max_concurrency: int):
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.limit = max_concurrency
        self.semaphore: asyncio.Semaphore | None = None
        self.running: dict[int, Any] = {}  # task id -> the future of its call on the loop
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), name="sluice-actor-loop",
                                       daemon=True)
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.semaphore = asyncio.Semaphore(self.limit)
        started.set()
        self.loop.run_forever()

    def on_loop(self) -> bool:
        """Whether the calling code runs on this loop's thread."""
        return threading.current_thread() is self.thread

    def submit(self, msg: tuple) -> None:
        """Schedule one ACTOR_CALL message on the loop (called from the main thread)."""
        task_id = msg[1]
        future = asyncio.run_coroutine_threadsafe(self._call(msg), self.loop)
        self.running[task_id] = future
        future.add_done_callback(lambda _: self.running.pop(task_id, None))

    def cancel(self, task_id: int) -> bool:
        """Cancel call ``task_id`` if it waits or runs on the loop (it raises CancelledError
        at its next ``await`` and fails with TaskCancelledError); whether it was there."""
        future = self.running.get(task_id)
        if future is None:
            return False
        future.cancel()
        return True

    def result_of(self, awaitable: Any) -> Any:
        """Await ``awaitable`` on the loop and return its result (called from the main
        thread: a chain hop on an async method waits for it there)."""
        async def run() -> Any:
            async with self.semaphore:
                return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    async def _call(self, msg: tuple) -> None:
        try:
            await self._run_call(msg)
        except asyncio.CancelledError:  # sluice.cancel: the call fails, the actor goes on
            self.worker.cancelled_call(msg[1], msg[6])

    async def _run_call(self, msg: tuple) -> None:
        from sluice.executor.calls import decode_call
        from sluice.executor.worker import EXIT_ERRORS
        from sluice.executor.worker_api import CURRENT_TASK

        _, task_id, method, args_blob, deps, return_ids, name, stream = msg
        w = self.worker
        start = time.time()
        async with self.semaphore:
            if w.actor_error is not None:
                w.emit((P.FAILED, task_id, w.actor_error, False, 0.0, start))
                w.flush()
                return
            try:
                args, kwargs = decode_call(args_blob, w.resolve_deps(deps))
                CURRENT_TASK.set(task_id)  # this asyncio task's own
                value = w.bound_method(method)(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                if stream is not None:
                    value = await w.streams.run_async(task_id, value, stream)
            except EXIT_ERRORS:
                w.exit_call(task_id, name, start)
                return  # (exit_call flushed)
            except Exception as err:
                w.fail_call(task_id, name, err, start)
            else:
                w.complete_call(task_id, name, value, return_ids, start)
            w.flush()
