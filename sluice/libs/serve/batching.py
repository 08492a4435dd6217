"""``@serve.batch``: concurrent calls of an async method are gathered into one call on a list.

As in Ray Serve: the decorated ``async def`` takes a list of requests and returns a list of
as many results; each caller awaits the method with one request and gets its own result.
A batch is sent when it holds ``max_batch_size`` requests, or ``batch_wait_timeout_s`` after
its first one arrived.

>>> import asyncio
>>> class Model:
...     @batch(max_batch_size=4)
...     async def double(self, xs):
...         return [(x * 2, len(xs)) for x in xs]
>>> async def main():
...     m = Model()
...     return await asyncio.gather(*(m.double(i) for i in range(3)))
>>> asyncio.run(main())
[(0, 3), (2, 3), (4, 3)]
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any


class _BatchQueue:
    """The waiting requests of one batched method on one object (one event loop)."""

    def __init__(self, fn: Callable, owner: Any, max_batch_size: int, timeout_s: float):
        self.fn = fn
        self.owner = owner
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.timeout_s
            while len(batch) < self.max_batch_size:
                left = deadline - loop.time()
                if left <= 0:
                    while len(batch) < self.max_batch_size and not self.queue.empty():
                        batch.append(self.queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            await self._call(batch)

    async def _call(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        live = [(item, fut) for item, fut in batch if not fut.done()]
        if not live:
            return
        items = [item for item, _ in live]
        try:
            args = (items,) if self.owner is None else (self.owner, items)
            results = await self.fn(*args)
            if not isinstance(results, (list, tuple)) or len(results) != len(items):
                raise TypeError(f"@serve.batch method {self.fn.__qualname__} got {len(items)} "
                                f"requests and returned {_describe(results)}; return a list "
                                "with one result per request, in order")
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(live, results):
            if not fut.done():
                fut.set_result(result)


_FREE: dict[tuple[int, int], _BatchQueue] = {}  # (id(function), id(loop)) -> its queue


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def batch(_func: Callable | None = None, /, max_batch_size: int = 10,
          batch_wait_timeout_s: float = 0.01, **_ray_only: Any) -> Any:
    """Ray Serve's ``@serve.batch`` for ``async def`` methods (or functions) taking a list."""
    if not isinstance(max_batch_size, int) or isinstance(max_batch_size, bool) or max_batch_size < 1:
        raise ValueError(f"@serve.batch: max_batch_size={max_batch_size!r} must be an int >= 1")
    if not isinstance(batch_wait_timeout_s, (int, float)) or batch_wait_timeout_s < 0:
        raise ValueError(f"@serve.batch: batch_wait_timeout_s={batch_wait_timeout_s!r} must be "
                         "a number of seconds >= 0")

    def wrap(fn: Callable) -> Callable:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@serve.batch goes on an `async def` method; {fn.__qualname__} is "
                            "not a coroutine function: make it async def")
        # The queue lives on the object (or, for a function, in _FREE by loop): the wrapper
        # captures nothing but plain values, so a class holding it pickles to its replicas.
        attr = f"_serve_batch_queue_{fn.__name__}"

        @functools.wraps(fn)
        async def batched(*args: Any) -> Any:
            loop = asyncio.get_running_loop()
            if len(args) == 2:
                owner, item = args
                found = owner.__dict__.get(attr)
                if found is None or found.task.get_loop() is not loop:
                    found = _BatchQueue(fn, owner, max_batch_size, batch_wait_timeout_s)
                    owner.__dict__[attr] = found
            elif len(args) == 1:
                (item,) = args
                found = _FREE.get((id(fn), id(loop)))
                if found is None:
                    found = _FREE[(id(fn), id(loop))] = _BatchQueue(
                        fn, None, max_batch_size, batch_wait_timeout_s)
            else:
                raise TypeError(f"{fn.__qualname__} is batched: call it with one request")
            future = asyncio.get_running_loop().create_future()
            found.queue.put_nowait((item, future))
            return await future

        return batched

    return wrap(_func) if _func is not None else wrap
