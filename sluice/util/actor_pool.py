"""``ActorPool``: spread calls over a fixed set of actors (Ray's ``ray.util.ActorPool``).

The pool's state, field by field (the invariants ``submit`` and ``_return_actor`` keep):

- ``_idle``: actors with no call in flight; ``submit`` takes from its end, as Ray's does.
- ``_in_flight``: the ref of each call not yet returned -> (its index, its actor); a ref
  (or a tuple of refs, when ``fn`` returns a list) appears once.
- ``_by_index``: index -> ref, for the in-order ``get_next``.
- ``_pending``: (fn, value, ahead) submitted while no actor had room, in submit order;
  ``ahead`` is how many calls an actor may hold for it (1 for ``submit``, ``_MAP`` for a map).
- ``_busy``: actor -> number of its calls in flight. ``submit`` gives an actor one call at a
  time (Ray's contract: the actor is busy until its ref completes); ``map`` and
  ``map_unordered`` may queue several calls on each actor so it never waits for the driver
  between calls (how many: ``_depth``). An actor is idle exactly when it is in the
  pool and ``_busy`` has no entry for it.
- ``_fetched``: values of in-flight calls already read (``get_next`` reads the ready ones
  after the one it returns in one ``get``); each is still in ``_in_flight`` until returned.
- ``_per_call``: actor -> seconds one of its calls takes, as the driver sees its results
  come back (a moving average; absent before its second result); ``_last_result``: actor
  -> ``perf_counter()`` of its last result in this map.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any, Callable, Iterable, Iterator

import sluice
from sluice.exceptions import ActorDiedError

# Calls ``map`` keeps queued on each actor: enough to cover ``_HIDE_S`` of work, so an actor
# never waits for the driver between short calls, and at most ``_MAX_AHEAD``; long calls get
# 2 (one running, one waiting), so a slow actor holds at most one value a free one could
# take. An actor is topped up only once it is down to half of that, so the driver sends
# calls in batches (one write to the worker for many calls) rather than one at a time.
_MAX_AHEAD = 32
_HIDE_S = 0.002
_MAP = 0  # the ``ahead`` of a map's submits: each actor's ``_depth`` at the time


class ActorPool:
    """Operate on a fixed pool of actors, as Ray's ``ray.util.ActorPool``.

    ``fn`` in ``map``/``submit`` takes ``(actor, value)`` and returns the ref of one call,
    e.g. ``lambda a, v: a.double.remote(v)``.

    >>> import sluice
    >>> from sluice.util import ActorPool
    >>> @sluice.remote
    ... class Actor:
    ...     def double(self, v):
    ...         return 2 * v
    >>> pool = ActorPool([Actor.remote(), Actor.remote()])       # doctest: +SKIP
    >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))  # doctest: +SKIP
    [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[Any]):
        if isinstance(actors, (str, bytes)) or not isinstance(actors, Iterable):
            raise TypeError(f"ActorPool(actors={actors!r}): give a list of actor handles, e.g. "
                            f"[Worker.remote() for _ in range(2)]")
        self._idle: list[Any] = list(actors)
        for actor in self._idle:
            _check_actor(actor, "ActorPool(actors=...)")
        self._in_flight: dict[Any, tuple[int, Any]] = {}
        self._by_index: dict[int, Any] = {}
        self._pending: collections.deque[tuple[Callable, Any, int]] = collections.deque()
        self._busy: dict[Any, int] = {}
        self._next_task = 0     # index the next submitted call gets
        self._next_return = 0   # index get_next returns next
        self._fetched: dict[Any, Any] = {}
        self._per_call: dict[Any, float] = {}
        self._last_result: dict[Any, float] = {}

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn`` over the actors and ``values``; results in the order of ``values``.

        Results still pending from earlier submits are dropped first, as Ray does. The
        iterator must be consumed for every value to be computed.
        """
        self._drop_pending_results(ordered=True)
        self._last_result.clear()  # the time since the last map is no call's
        for value in values:
            self._submit(fn, value, _MAP)
        return self._results(self.get_next)

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """As ``map``, but each result comes as soon as it is ready, in any order."""
        self._drop_pending_results(ordered=False)
        self._last_result.clear()
        for value in values:
            self._submit(fn, value, _MAP)
        return self._results(self.get_next_unordered)

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run ``fn(actor, value)`` on an idle actor, or queue it until one is free.

        Its result comes from ``get_next`` / ``get_next_unordered``.
        """
        self._submit(fn, value, 1)

    def _submit(self, fn: Callable[[Any, Any], Any], value: Any, ahead: int) -> None:
        """Send to an actor holding fewer than ``ahead`` calls, else queue (behind the
        values already queued: they go first)."""
        actor = None if self._pending else self._free_actor(ahead)
        if actor is None:
            self._pending.append((fn, value, ahead))
        else:
            self._send(fn, value, actor)

    def _send(self, fn: Callable[[Any, Any], Any], value: Any, actor: Any) -> None:
        ref = fn(actor, value)
        key = tuple(ref) if isinstance(ref, list) else ref
        self._in_flight[key] = (self._next_task, actor)
        self._by_index[self._next_task] = ref
        self._busy[actor] = self._busy.get(actor, 0) + 1
        self._next_task += 1

    def has_next(self) -> bool:
        """Whether any submitted result has not been returned yet."""
        return bool(self._in_flight)

    def has_free(self) -> bool:
        """Whether an actor is idle and no submit is waiting for one."""
        return bool(self._idle) and not self._pending

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submit order, waiting up to ``timeout`` seconds (None: forever).

        Raises ``TimeoutError`` when it is not ready in time; with ``ignore_if_timedout`` the
        pool then skips that result (its actor goes back to the pool) instead of keeping it.
        Raises ``StopIteration`` when nothing is pending.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return >= self._next_task:
            raise ValueError("get_next() cannot follow get_next_unordered() on the same "
                             "submits; use get_next_unordered() until has_next() is False")
        ref = self._by_index[self._next_return]
        timed_out = False
        if timeout is not None and _key(ref) not in self._fetched:
            ready, _ = sluice.wait(_as_list(ref), num_returns=len(_as_list(ref)), timeout=timeout)
            if len(ready) < len(_as_list(ref)):
                if not ignore_if_timedout:
                    raise TimeoutError("Timed out waiting for result")
                timed_out = True
        del self._by_index[self._next_return]
        self._next_return += 1
        _, actor = self._in_flight.pop(_key(ref))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"Timed out waiting for result; the call {ref} has been ignored")
        return self._result(ref, actor, read_ahead=True)

    def get_next_unordered(self, timeout: float | None = None,
                           ignore_if_timedout: bool = False) -> Any:
        """Any ready result, waiting up to ``timeout`` seconds (None: forever).

        Raises ``TimeoutError`` when none is ready in time (with ``ignore_if_timedout`` the
        pool skips one pending result first). Raises ``StopIteration`` when nothing is pending.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready = next(iter(self._fetched)) if self._fetched else self._wait_one(timeout)
        if ready is None:
            if not ignore_if_timedout:
                raise TimeoutError("Timed out waiting for result")
            key = next(iter(self._in_flight))
            index, actor = self._in_flight.pop(key)
            del self._by_index[index]
            self._fetched.pop(key, None)
            self._return_actor(actor)
            raise TimeoutError(f"Timed out waiting for result; the call {key} has been ignored")
        index, actor = self._in_flight.pop(ready)
        ref = self._by_index.pop(index)
        self._next_return = max(self._next_return, index + 1)
        return self._result(ref, actor, read_ahead=True)

    def push(self, actor: Any) -> None:
        """Add ``actor`` to the pool's idle set (a queued submit may take it at once)."""
        _check_actor(actor, "ActorPool.push")
        if actor in self._idle or actor in self._busy:
            raise ValueError(f"{actor!r} already belongs to this ActorPool; push each actor once")
        self._return_actor(actor, returned=False)

    def pop_idle(self) -> Any | None:
        """Remove and return an idle actor, or None when no actor is free."""
        return self._idle.pop() if self.has_free() else None

    # -- internals ---------------------------------------------------------------------

    def _results(self, next_result: Callable[[], Any]) -> Iterator[Any]:
        while self.has_next():
            yield next_result()

    def _drop_pending_results(self, ordered: bool) -> None:
        """Skip the results of earlier submits (Ray's ``map`` does the same)."""
        while self.has_next():
            try:
                if ordered:
                    self.get_next(timeout=0, ignore_if_timedout=True)
                else:
                    self.get_next_unordered(timeout=0)
            except TimeoutError:
                pass

    def _depth(self, actor: Any) -> int:
        """Calls a map keeps queued on ``actor`` (see ``_MAX_AHEAD``)."""
        per_call = self._per_call.get(actor)
        if per_call is None:
            return 2
        return max(2, min(_MAX_AHEAD, 1 + math.ceil(_HIDE_S / max(per_call, 1e-7))))

    def _free_actor(self, ahead: int) -> Any | None:
        """An idle actor, else the least busy one holding fewer than ``ahead`` calls
        (``_MAP``: its ``_depth``), or None."""
        if self._idle:
            return self._idle.pop()
        best = None
        if ahead != 1:
            for actor, busy in self._busy.items():
                limit = self._depth(actor) if ahead == _MAP else ahead
                if busy < limit and (best is None or busy < self._busy[best]):
                    best = actor
        return best

    def _fill(self) -> None:
        """Start queued submits, in order, while an actor has room for the first."""
        while self._pending:
            fn, value, ahead = self._pending[0]
            actor = self._free_actor(ahead)
            if actor is None:
                return
            self._pending.popleft()
            self._send(fn, value, actor)

    def _wait_one(self, timeout: float | None) -> Any | None:
        """The key of one finished call, or None if none finished within ``timeout``."""
        keys = list(self._in_flight)
        refs = [ref for key in keys for ref in _as_list(key)]
        ready, _ = sluice.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return None
        done = set(ready)
        for key in keys:
            if any(r in done for r in _as_list(key)):
                if len(_as_list(key)) == 1:
                    return key
                ok, _ = sluice.wait(list(key), num_returns=len(key), timeout=timeout)
                return key if len(ok) == len(key) else None
        return None

    def _result(self, ref: Any, actor: Any, read_ahead: bool = False) -> Any:
        alive = True
        try:
            key = _key(ref)
            if key in self._fetched:
                value = self._fetched.pop(key)
            else:
                value = sluice.get(ref)
                if read_ahead:
                    self._read_ready()
            self._time_result(actor)
            return value
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive=alive)

    def _read_ready(self) -> None:
        """Read the values of the calls in flight that are ready now, in one ``get``: one
        round trip to the runtime for many results instead of one each. (A call that
        returned a list of refs is read on its own turn.)"""
        refs = [key for key in self._in_flight
                if not isinstance(key, tuple) and key not in self._fetched]
        if not refs:
            return
        ready, _ = sluice.wait(refs, num_returns=len(refs), timeout=0)
        try:
            values = sluice.get(ready)
        except Exception:  # one failed: each is read on its own turn, raising there
            return
        self._fetched.update(zip(ready, values))

    def _return_actor(self, actor: Any, alive: bool = True, returned: bool = True) -> None:
        """Count one call of ``actor`` done (``returned``) or add it anew; start queued submits."""
        if not alive:  # a dead actor leaves the pool, or submit would keep choosing it
            self._busy.pop(actor, None)
            self._per_call.pop(actor, None)
            self._last_result.pop(actor, None)
        elif not returned:
            self._idle.append(actor)
        else:
            left = self._busy.get(actor, 0) - 1
            if left > 0:
                self._busy[actor] = left
                if left > self._depth(actor) // 2:
                    return  # still has calls queued: top it up later, in one batch
            else:
                self._busy.pop(actor, None)
                self._idle.append(actor)
        self._fill()


    def _time_result(self, actor: Any) -> None:
        """Update ``actor``'s ``_per_call`` from the time since its last result."""
        now = time.perf_counter()
        last = self._last_result.get(actor)
        if last is not None:
            old = self._per_call.get(actor)
            self._per_call[actor] = now - last if old is None else 0.8 * old + 0.2 * (now - last)
        self._last_result[actor] = now


def _key(ref: Any) -> Any:
    return tuple(ref) if isinstance(ref, list) else ref


def _as_list(ref: Any) -> list:
    return list(ref) if isinstance(ref, (list, tuple)) else [ref]


def _check_actor(actor: Any, what: str) -> None:
    """Refuse what is not an actor handle, naming it."""
    if not isinstance(actor, sluice.ActorHandle):
        raise TypeError(f"{what}: {actor!r} is not an actor handle; give handles made with "
                        f"SomeActor.remote()")
