"""A Plan's run state in this process, kept outside the immutable Plan.

A :class:`~sluice.compiler.plan.Plan` is frozen data that many threads may
execute at once. What running it leaves behind (the stage functions
registered with the runtime, the actors it created) is a :class:`PlanRun`,
one per Plan object and runtime, created under a lock. Actors are created
under the PlanRun's lock, so concurrent first executes create each actor once.

A PlanRun lives as long as its Plan object: it is found by the Plan's
identity (two equal Plans have their own actors, as two ``compile()`` calls
do) and dropped when the Plan is garbage collected. A new runtime (after
``sluice.shutdown()`` and ``sluice.init()``) gets a new PlanRun.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sluice.compiler.plan import Plan


class PlanRun:
    """What running one Plan object on one runtime keeps between executes.

    Fields (``lock`` guards the first write of every entry; reads are lock-free
    because an entry, once set, never changes):
      ``runtime``: the runtime this state belongs to.
      ``tasks``: registration key -> (function id, pickled stage function, task options).
      ``actors``: ACTOR op id -> what the stage's actor is (an ``ActorHandle``, or
      whatever a hook set made of it); created once.
      ``prepared``: anything a runner derives once per plan (its action list).
    """

    __slots__ = ("runtime", "lock", "tasks", "actors", "prepared", "__weakref__")

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.lock = threading.RLock()
        self.tasks: dict[Any, tuple[int, bytes, dict[str, Any]]] = {}
        self.actors: dict[str, Any] = {}
        self.prepared: dict[Any, Any] = {}

    def once(self, table: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
        """``table[key]``, made by ``make()`` the first time (under the lock: once only)."""
        found = table.get(key, _MISSING)
        if found is not _MISSING:
            return found
        with self.lock:
            found = table.get(key, _MISSING)
            if found is _MISSING:
                found = table[key] = make()
            return found

    def forget_actor(self, op_id: str) -> Any:
        """Drop the actor of ``op_id`` (the next execute makes a new one); the old value."""
        with self.lock:
            return self.actors.pop(op_id, None)


_MISSING = object()


class _PlanRuns:
    """Plan object -> its PlanRun for the current runtime. Entries go with their Plan."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id(plan) -> (weak reference to the plan, its PlanRun). The weak reference's
        # callback removes the entry when the plan dies, before its id can be reused.
        self._runs: dict[int, tuple[weakref.ref[Plan], PlanRun]] = {}

    def get(self, plan: Plan, runtime: Any) -> PlanRun:
        entry = self._runs.get(id(plan))
        if entry is not None and entry[1].runtime is runtime and entry[0]() is plan:
            return entry[1]
        with self._lock:
            entry = self._runs.get(id(plan))
            if entry is not None and entry[1].runtime is runtime and entry[0]() is plan:
                return entry[1]
            key = id(plan)
            run = PlanRun(runtime)
            self._runs[key] = (weakref.ref(plan, functools.partial(self._drop, key)), run)
            return run

    def _drop(self, key: int, _dead: object) -> None:
        # No lock: the collector may call this inside get() on this thread. Only the
        # dying plan's entry can sit at its id, and dict.pop is atomic.
        self._runs.pop(key, None)

    def __len__(self) -> int:
        return len(self._runs)


# The one table of run states in this process: a Plan cannot hold its own (it is
# immutable and shared), and the runtime knows nothing of Plans.
_RUNS = _PlanRuns()


def plan_run(plan: Plan, runtime: Any) -> PlanRun:
    """The run state of ``plan`` (this object) on ``runtime``, made once under a lock."""
    return _RUNS.get(plan, runtime)
