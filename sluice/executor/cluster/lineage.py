"""Lineage: the task behind each node-held object, kept at the head to rebuild lost copies.

When a node dies, an object whose only copy it held is rebuilt by running the
task that made it again, and first those of its inputs that were freed since
(Ray's lineage reconstruction). So the head keeps, per object, the task that
made it, and keeps the lineage of a freed input while a kept task reads it.

Kept lineage is bounded in bytes, as Ray's ``max_lineage_bytes`` bounds it:
once the total passes the cap, the lineage of the oldest live objects is
evicted (with that of their freed inputs nothing else needs) until it fits.
A lost object whose lineage, or an input's, was evicted cannot be rebuilt;
its error names the cap.

Plain state, no lock and no scheduler: the head calls it under its scheduler
lock and tells it what it needs of the object table through a
:class:`RebuildView`. Every walk (forgetting, evicting, planning a rebuild)
uses an explicit worklist, never recursion, and a rebuild is planned a bounded
number of moves at a time (:meth:`RebuildPlan.step`), so the head can release
its lock between steps however long the chain.

>>> lin = Lineage(cap=10_000)
>>> _ = lin.record("task a", outputs=[1], deps=[], nbytes=600)
>>> _ = lin.record("task b", outputs=[2], deps=[1], nbytes=600)
>>> lin.release(1)              # 1 is freed, but 2's lineage reads it: kept
>>> lin.count, lin.nbytes
(2, 1200)
>>> lin.release(2)              # nothing needs either now
>>> lin.count, lin.nbytes
(0, 0)
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from sluice.exceptions import InternalError

DEFAULT_MAX_LINEAGE_BYTES = 1 << 30
"""Ray's default for ``max_lineage_bytes``: 1 GB of kept lineage."""
ENV_MAX_LINEAGE_BYTES = "SLUICE_MAX_LINEAGE_BYTES"
RECORD_BYTES = 512
"""What one kept task costs besides its argument bytes and ids: the task record, the lineage
record and their entries in the head's tables (an estimate, counted the same for every task)."""
ID_BYTES = 8
REBUILD_STEP = 500
"""Moves (an input looked at, or a task planned) per step of a rebuild: a few milliseconds."""

# What a RebuildView says of an object id.
HELD, FAILED, GONE = 0, 1, 2
# Why an object cannot be rebuilt (Failure.reason).
NO_LINEAGE, EVICTED, FAILED_INPUT = 0, 1, 2


def lineage_nbytes(args_bytes: int, name: str, ids: int) -> int:
    """The bytes a kept task counts against the cap: its pickled arguments, its function's
    name, ``ids`` object ids (inputs, nested refs, results) and :data:`RECORD_BYTES`."""
    return args_bytes + len(name) + ID_BYTES * ids + RECORD_BYTES


def max_lineage_bytes_from(environ: Mapping[str, str] = os.environ) -> int:
    """The cap from ``SLUICE_MAX_LINEAGE_BYTES``, or :data:`DEFAULT_MAX_LINEAGE_BYTES`."""
    text = environ.get(ENV_MAX_LINEAGE_BYTES)
    if text is None or not text.strip():
        return DEFAULT_MAX_LINEAGE_BYTES
    return check_max_lineage_bytes(text, f"{ENV_MAX_LINEAGE_BYTES}={text!r}")


def check_max_lineage_bytes(value: Any, label: str) -> int:
    """``value`` as a positive int, or a ValueError starting with ``label`` (the flag or
    variable and what it was given)."""
    try:
        cap = int(str(value).strip())
    except ValueError:
        cap = 0
    if cap <= 0:
        raise ValueError(f"{label}: give a positive number of bytes of lineage the head keeps "
                         f"(default {DEFAULT_MAX_LINEAGE_BYTES}, 1 GB)")
    return cap


class Record:
    """One kept task: what the head needs to run it again."""

    __slots__ = ("task", "deps", "outputs", "nbytes", "kept")

    def __init__(self, task: Any, deps: tuple[int, ...], outputs: tuple[int, ...], nbytes: int):
        self.task = task          # opaque here: the head's task record
        self.deps = deps          # distinct input ids
        self.outputs = outputs    # its results whose lineage was kept when it finished
        self.nbytes = nbytes      # counted against the cap while kept
        self.kept = 0             # ids whose lineage this is (``made_by`` entries); dropped at 0


class Lineage:
    """Kept lineage and its byte count. Invariants (:meth:`check` asserts them):

    * ``made_by[oid]`` is the record of the task that last made ``oid``; a record is kept
      while ``kept`` ids map to it, and ``nbytes``/``count`` sum the kept records.
    * ``uses[oid]`` counts the kept records that read ``oid`` (absent at 0).
    * An object the head still tracks is *live*; one it dropped is in ``released`` while a
      kept record reads it (``released`` is a subset of ``uses``), and forgotten otherwise.
    * ``live`` holds the live objects that have lineage, oldest first: the eviction order.
      Every kept record is reached from one of them through inputs, so evicting them all
      empties the lineage: after every call ``nbytes <= cap``.
    * ``evicted`` holds the objects whose lineage the cap evicted, while they are live or
      read by a kept record, so their loss names the cap.

    Cost: each record is added once and dropped once, so a call is amortized O(1) per task;
    one eviction may drop a long chain of freed inputs' records at once (as Ray's does).
    """

    def __init__(self, cap: int = DEFAULT_MAX_LINEAGE_BYTES):
        self.cap = check_max_lineage_bytes(cap, f"max_lineage_bytes={cap!r}")
        self.made_by: dict[int, Record] = {}
        self.uses: dict[int, int] = {}
        self.released: set[int] = set()
        self.live: OrderedDict[int, None] = OrderedDict()
        self.evicted: set[int] = set()
        self.nbytes = 0
        self.count = 0
        self.evictions = 0        # objects whose lineage the cap evicted so far

    # -- what the head calls -------------------------------------------------------------
    def record(self, task: Any, outputs: Sequence[int], deps: Iterable[int], nbytes: int) -> Record:
        """``task`` finished and made ``outputs`` (live objects): keep it as their lineage."""
        rec = Record(task, tuple(dict.fromkeys(deps)), tuple(outputs), nbytes)
        for dep in rec.deps:  # before a replaced record lets go of the same inputs
            self.uses[dep] = self.uses.get(dep, 0) + 1
        self.nbytes += nbytes
        self.count += 1
        forget: list[int] = []
        for oid in rec.outputs:
            old = self.made_by.get(oid)
            self.made_by[oid] = rec
            rec.kept += 1
            self.released.discard(oid)
            self.evicted.discard(oid)
            self.live[oid] = None
            self.live.move_to_end(oid)
            if old is not None and old is not rec:
                self._unref(old, forget)
        self._forget(forget)
        self._fit()
        return rec

    def release(self, oid: int) -> None:
        """The head dropped ``oid``: keep its lineage only while a kept record reads it."""
        if oid in self.uses:
            self.live.pop(oid, None)
            self.released.add(oid)
            return
        self.evicted.discard(oid)
        rec = self.made_by.pop(oid, None)
        if rec is not None:  # (most freed objects have none: inline values, puts)
            self.live.pop(oid, None)
            forget: list[int] = []
            self._unref(rec, forget)
            self._forget(forget)

    def lineage_of(self, oid: int) -> Record | None:
        return self.made_by.get(oid)

    def was_evicted(self, oid: int) -> bool:
        return oid in self.evicted

    # -- internals -----------------------------------------------------------------------
    def _fit(self) -> None:
        """Evict the lineage of the oldest live objects until the total fits the cap."""
        while self.nbytes > self.cap and self.live:
            oid, _ = self.live.popitem(last=False)
            self.evicted.add(oid)
            self.evictions += 1
            forget: list[int] = []
            rec = self.made_by.pop(oid, None)
            if rec is not None:
                self._unref(rec, forget)
            self._forget(forget)

    def _forget(self, stack: list[int]) -> None:
        """Drop the lineage of every id on ``stack`` and of inputs left unread (a worklist)."""
        while stack:
            oid = stack.pop()
            self.evicted.discard(oid)
            rec = self.made_by.pop(oid, None)
            if rec is not None:
                self._unref(rec, stack)

    def _unref(self, rec: Record, stack: list[int]) -> None:
        """One id less maps to ``rec``; at none, drop it and push inputs now unread and released."""
        rec.kept -= 1
        if rec.kept:
            return
        self.nbytes -= rec.nbytes
        self.count -= 1
        for dep in rec.deps:
            left = self.uses[dep] - 1
            if left:
                self.uses[dep] = left
                continue
            del self.uses[dep]
            if dep in self.released:
                self.released.discard(dep)
                stack.append(dep)

    def check(self) -> None:
        """Assert the invariants in the class docstring (walks everything: for tests)."""
        records = {id(r): r for r in self.made_by.values()}
        kept: dict[int, int] = {}
        for r in self.made_by.values():
            kept[id(r)] = kept.get(id(r), 0) + 1
        problems = []
        if sum(r.nbytes for r in records.values()) != self.nbytes or len(records) != self.count:
            problems.append("nbytes/count do not sum the kept records")
        if self.nbytes > self.cap:
            problems.append(f"{self.nbytes} bytes kept past the cap of {self.cap}")
        for key, r in records.items():
            if r.kept != kept[key]:
                problems.append(f"record of {r.outputs} counts {r.kept} ids, not {kept[key]}")
        uses: dict[int, int] = {}
        for r in records.values():
            for dep in r.deps:
                uses[dep] = uses.get(dep, 0) + 1
        if uses != self.uses:
            problems.append("uses do not count the kept records' inputs")
        if not self.released <= self.uses.keys():
            problems.append("a released object no kept record reads is still tracked")
        if any(oid in self.released for oid in self.live):
            problems.append("a released object is queued for eviction")
        if any(oid not in self.live and oid not in self.released for oid in self.made_by):
            problems.append("a kept object is neither live nor read")
        if problems:
            raise InternalError("lineage invariants broken: " + "; ".join(problems))


class Failure(NamedTuple):
    """Why an object cannot be rebuilt: ``cause`` (it, or an input on the way) and a reason."""

    cause: int
    reason: int  # NO_LINEAGE, EVICTED or FAILED_INPUT


class RebuildView(Protocol):
    """What a rebuild needs of the head's object table and scheduler."""

    def status(self, oid: int) -> int:
        """HELD (tracked, readable or being computed), FAILED, or GONE (freed)."""

    def hold(self, oid: int) -> None:
        """Keep ``oid`` tracked until the task reading it is submitted."""

    def unhold(self, oid: int) -> None:
        """Undo one :meth:`hold`."""

    def submit(self, task: Any, outputs: list[int]) -> None:
        """Run ``task`` again; keep only ``outputs`` of its results."""

    def fail(self, oid: int, failure: Failure, context: Any) -> None:
        """Lost object ``oid`` cannot be rebuilt."""


class _Frame:
    __slots__ = ("oid", "record", "next", "held", "failure")

    def __init__(self, oid: int, record: Record):
        self.oid = oid
        self.record = record
        self.next = 0                    # index of the next input to look at
        self.held: list[int] = []        # inputs held until this task is submitted
        self.failure: Failure | None = None


class RebuildPlan:
    """Lost objects to rebuild, worked through a bounded number of moves per :meth:`step`.

    A depth-first walk on an explicit stack: an object's task is submitted once each input
    is tracked (held until then) or was itself submitted for rebuilding, so tasks go out
    inputs first, and readers wait for them as for any pending object. State kept between
    steps: the stack, the roots still to plan, and the failures found (for shared inputs).
    """

    def __init__(self, lineage: Lineage):
        self.lineage = lineage
        self.roots: deque[int] = deque()
        self.waiting: dict[int, Any] = {}      # lost objects not yet planned -> their context
        self.stack: list[_Frame] = []
        self.on_stack: set[int] = set()
        self.failed: dict[int, Failure] = {}   # during a plan: ids found impossible to rebuild
        self.steps = 0
        self.submitted = 0

    @property
    def pending(self) -> bool:
        return bool(self.stack or self.roots)

    def add(self, oid: int, context: Any) -> None:
        """Lost object ``oid`` (the head made it pending) is to be rebuilt."""
        if oid not in self.waiting:
            self.waiting[oid] = context
            self.roots.append(oid)

    def step(self, view: RebuildView, budget: int = REBUILD_STEP) -> bool:
        """Make up to ``budget`` moves; whether work remains."""
        self.steps += 1
        stack = self.stack
        while budget > 0:
            budget -= 1
            if not stack:
                if not self.roots:
                    break
                oid = self.roots.popleft()
                if oid in self.waiting:
                    self._push(oid, None, view)
                continue
            top = stack[-1]
            deps = top.record.deps
            if top.failure is None and top.next < len(deps):
                dep = deps[top.next]
                top.next += 1
                self._input(top, dep, view)
            else:
                stack.pop()
                self.on_stack.discard(top.oid)
                self._done(top, stack[-1] if stack else None, view)
        if not self.pending:
            self.failed.clear()  # only shared within one plan
            return False
        return True

    def _input(self, top: _Frame, dep: int, view: RebuildView) -> None:
        failure = self.failed.get(dep)
        if failure is not None:
            top.failure = failure
        elif dep in self.waiting:  # lost too: rebuild it first
            self._push(dep, top, view)
        else:
            state = view.status(dep)
            if state == HELD:
                view.hold(dep)
                top.held.append(dep)
            elif state == FAILED:
                top.failure = Failure(dep, FAILED_INPUT)
            else:  # freed since: rebuild it through its own lineage
                self._push(dep, top, view)

    def _push(self, oid: int, parent: _Frame | None, view: RebuildView) -> None:
        if oid in self.on_stack:
            raise InternalError(f"lineage of object {oid:x} reads itself")
        rec = self.lineage.made_by.get(oid)
        if rec is None:
            reason = EVICTED if self.lineage.was_evicted(oid) else NO_LINEAGE
            self._settle_failure(oid, Failure(oid, reason), parent, view)
            return
        self.stack.append(_Frame(oid, rec))
        self.on_stack.add(oid)

    def _settle_failure(self, oid: int, failure: Failure, parent: _Frame | None,
                        view: RebuildView) -> None:
        self.failed[oid] = failure
        if parent is not None:
            parent.failure = failure
        if oid in self.waiting:
            view.fail(oid, failure, self.waiting.pop(oid))

    def _done(self, frame: _Frame, parent: _Frame | None, view: RebuildView) -> None:
        if frame.failure is not None:
            self._settle_failure(frame.oid, frame.failure, parent, view)
        else:
            rec = frame.record
            outputs = [frame.oid] + [o for o in rec.outputs if o != frame.oid and o in self.waiting
                                     and self.lineage.made_by.get(o) is rec]
            for oid in outputs:
                self.waiting.pop(oid, None)
            view.submit(rec.task, outputs)
            self.submitted += 1
            if parent is not None:  # the reader holds it until it is submitted itself
                view.hold(frame.oid)
                parent.held.append(frame.oid)
        for oid in frame.held:  # after the submit: the task holds its inputs itself now
            view.unhold(oid)
