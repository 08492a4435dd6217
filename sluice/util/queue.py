"""``Queue``: a first-in, first-out queue held by an actor (Ray's ``ray.util.queue``).

The items live in an ``asyncio.Queue`` inside an async actor, so a ``get`` or ``put`` that
blocks waits on the actor's event loop and never stops it serving other callers. A ``Queue``
pickles (it carries only its actor's handle): pass it to tasks and actors, which use it as
the driver does.
"""

from __future__ import annotations

import asyncio
import functools
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any

import sluice

__all__ = ["Empty", "Full", "Queue"]


class Empty(_stdlib_queue.Empty):
    """Raised by a get on an empty queue: non-blocking, or blocking past its timeout."""


class Full(_stdlib_queue.Full):
    """Raised by a put on a full queue: non-blocking, or blocking past its timeout."""


class Queue:
    """A FIFO queue backed by an actor, usable from the driver, tasks and actors.

    ``maxsize`` <= 0 means unbounded. ``actor_options`` go to the actor's ``.options()``
    (e.g. ``{"num_cpus": 1}``); the actor reserves no CPU by default.

    >>> q = Queue()                      # doctest: +SKIP
    >>> q.put(1); q.get()                # doctest: +SKIP
    1
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"Queue(maxsize={maxsize!r}): give an int (0 or less: unbounded)")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"Queue(actor_options={actor_options!r}): give a dict of actor "
                            f"options, e.g. {{'num_cpus': 1}}")
        self.maxsize = maxsize
        actor_cls = _queue_actor_class()
        if actor_options:
            actor_cls = actor_cls.options(**actor_options)
        self.actor: Any = actor_cls.remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return sluice.get(self._actor().qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue (as ``size``)."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue holds no items."""
        return sluice.get(self._actor().empty.remote())

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items."""
        return sluice.get(self._actor().full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is full and ``block``, wait up to ``timeout`` seconds
        (None: until there is room). Raises ``Full`` if there is no room in time."""
        if not block:
            _call(self._actor().put_nowait.remote(item))
            return
        _check_timeout(timeout)
        _call(self._actor().put.remote(item, timeout))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the first item; if the queue is empty and ``block``, wait up
        to ``timeout`` seconds (None: until an item comes). Raises ``Empty`` if none does."""
        if not block:
            return _call(self._actor().get_nowait.remote())
        _check_timeout(timeout)
        return _call(self._actor().get.remote(timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for asyncio code: awaits room instead of blocking the thread."""
        if not block:
            await _call_async(self._actor().put_nowait.remote(item))
            return
        _check_timeout(timeout)
        await _call_async(self._actor().put.remote(item, timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for asyncio code: awaits an item instead of blocking the thread."""
        if not block:
            return await _call_async(self._actor().get_nowait.remote())
        _check_timeout(timeout)
        return await _call_async(self._actor().get.remote(timeout))

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``: raises ``Full`` if the queue is full."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """``get(block=False)``: raises ``Empty`` if the queue is empty."""
        return self.get(block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add every item of ``items`` in order, or none: raises ``Full`` if they do not fit."""
        if not isinstance(items, Iterable):
            raise TypeError(f"put_nowait_batch() takes an iterable of items, got "
                            f"{type(items).__name__}")
        _call(self._actor().put_nowait_batch.remote(list(items)))

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return the first ``num_items`` items, or none: raises ``Empty`` if the
        queue holds fewer."""
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError(f"get_nowait_batch(num_items={num_items!r}) takes an int")
        if num_items < 0:
            raise ValueError(f"get_nowait_batch(num_items={num_items}) must be >= 0")
        return _call(self._actor().get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the queue's actor and release its resources; the queue is unusable after.

        With ``force`` the actor is killed at once. Without, it is given up to
        ``grace_period_s`` seconds to answer the calls sent to it before (a get or put
        blocked inside it does not end: it fails with ``ActorDiedError``), then killed.
        """
        if self.actor is None:
            return
        if not force:
            sluice.wait([self.actor.qsize.remote()], timeout=grace_period_s)
        sluice.kill(self.actor, no_restart=True)
        self.actor = None

    def _actor(self) -> Any:
        if self.actor is None:
            raise RuntimeError("this Queue was shut down; make a new Queue to go on")
        return self.actor


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout={timeout!r} must be a non-negative number or None")


def _call(ref: Any) -> Any:
    """``get`` of a queue call; its ``Empty``/``Full`` raise as themselves, not wrapped."""
    try:
        return sluice.get(ref)
    except Empty as err:
        raise Empty(*_cause_args(err)) from None
    except Full as err:
        raise Full(*_cause_args(err)) from None


async def _call_async(ref: Any) -> Any:
    """``_call`` for asyncio code: awaits the ref."""
    try:
        return await ref
    except Empty as err:
        raise Empty(*_cause_args(err)) from None
    except Full as err:
        raise Full(*_cause_args(err)) from None


def _cause_args(err: BaseException) -> tuple:
    cause = getattr(err, "cause", None)
    return cause.args if cause is not None else err.args


class _QueueActor:
    """The actor holding the items (async: a blocked get or put waits on its loop)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def empty(self) -> bool:
        return self.queue.empty()

    async def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full(f"the queue stayed full (maxsize {self.maxsize}) for {timeout} s") from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty(f"the queue stayed empty for {timeout} s") from None

    async def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full (maxsize {self.maxsize})") from None

    async def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    async def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            raise Full(f"cannot add {len(items)} items to a queue holding "
                       f"{self.queue.qsize()} of maxsize {self.maxsize}")
        for item in items:
            self.queue.put_nowait(item)

    async def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.queue.qsize():
            raise Empty(f"cannot get {num_items} items from a queue holding {self.queue.qsize()}")
        return [self.queue.get_nowait() for _ in range(num_items)]


@functools.cache
def _queue_actor_class() -> Any:
    """The queue's actor class, made (and pickled) once per process."""
    return sluice.remote(_QueueActor)
