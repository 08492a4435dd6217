"""The Plans this driver executed, for the dashboard: each Plan with its latest runs and,
per run, the objects each stage made (ids only: a record keeps no value alive).

Recording is off until something reads it (the dashboard turns it on): a run then costs
one small record. The newest :data:`MAX_PLANS` Plans are kept, each with its newest
:data:`MAX_RUNS` runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sluice.compiler.plan import Plan

MAX_PLANS = 50
MAX_RUNS = 20

recording = False
"""Whether runs are recorded (set by :func:`enable`)."""


@dataclass
class PlanRun:
    """One run: when it began, how (``"execute"`` or the hook set's name) and the object
    ids each stage's value holds (stage id -> ids)."""

    started: float
    how: str
    objects: dict[str, tuple[int, ...]]


@dataclass
class PlanRecord:
    """A Plan (a copy, without its functions) and its newest runs."""

    number: int
    plan: Plan
    first_run: float
    runs: deque[PlanRun] = field(default_factory=lambda: deque(maxlen=MAX_RUNS))
    total_runs: int = 0

    @property
    def name(self) -> str:
        """The Plan's output stages' names, joined."""
        by_output = {stage.output: stage for stage in self.plan.stages}
        names = [by_output[o].name for o in self.plan.outputs if o in by_output]
        return " + ".join(dict.fromkeys(names)) or f"plan {self.number}"


_lock = threading.Lock()
# id(plan) -> (a weak reference to the plan, its record), the most recently run last
_records: dict[int, tuple[weakref.ref[Plan], PlanRecord]] = {}
_numbers = itertools.count(1)


def enable() -> None:
    """Start recording runs."""
    global recording
    recording = True


def object_ids(value: Any) -> tuple[int, ...]:
    """The ids of the ObjectRefs ``value`` is or holds (a ref, or a list/tuple of them)."""
    from sluice.executor.object_ref import ObjectRef

    if isinstance(value, ObjectRef):
        return (value.id,)
    if isinstance(value, (list, tuple)):
        return tuple(v.id for v in value if isinstance(v, ObjectRef))
    return ()


def record(plan: Plan, values: dict[str, Any], how: str) -> None:
    """Note one run of ``plan`` whose stages' values are ``values`` (op id -> value)."""
    run = PlanRun(time.time(), how, {stage.id: object_ids(values.get(stage.output))
                                     for stage in plan.stages})
    with _lock:
        found = _records.pop(id(plan), None)
        if found is None or found[0]() is not plan:
            # A copy to draw, without its functions: the record keeps neither the Plan
            # (whose run state, actors included, goes with it) nor what its functions hold.
            found = (weakref.ref(plan), PlanRecord(next(_numbers),
                                                   dataclasses.replace(plan, functions=()),
                                                   run.started))
        entry = found[1]
        entry.runs.append(run)
        entry.total_runs += 1
        _records[id(plan)] = found
        while len(_records) > MAX_PLANS:
            del _records[next(iter(_records))]


def clear() -> None:
    """Forget every record (the runtime stopped: a new one numbers its objects anew)."""
    with _lock:
        _records.clear()


def records() -> list[PlanRecord]:
    """The recorded Plans, the most recently run last."""
    with _lock:
        return [record for _, record in _records.values()]


def find(number: int) -> PlanRecord | None:
    """The record numbered ``number``, if still kept."""
    with _lock:
        return next((r for _, r in _records.values() if r.number == number), None)
