"""What the head keeps to survive a node's death, and the rebuilds it runs after one.

:class:`Recovery` is the head scheduler's
:class:`~sluice.executor.placement.LineageKeeper`: as a task stores results on a
node it keeps the task as their lineage (bounded by ``max_lineage_bytes``, see
:mod:`sluice.executor.cluster.lineage`). When a node dies, the objects whose only
copy it held turn pending (:meth:`Scheduler.objects_lost
<sluice.executor.scheduler.Scheduler.objects_lost>`) and are handed to
:meth:`Recovery.lost`; the head's rebuild thread then calls :meth:`Recovery.step`,
a bounded number of moves per hold of the scheduler lock, which runs the tasks
that made them again (and first those of their inputs freed since), or fails an
object that cannot be rebuilt with an :class:`~sluice.exceptions.ObjectLostError`
saying why.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from sluice.exceptions import ObjectReconstructionFailedError, ObjectReconstructionFailedLineageEvictedError
from sluice.executor import protocol as P
from sluice.executor.cluster import lineage as L
from sluice.executor.object_ref import OWNER_SHIFT
from sluice.executor.records import FAILED, TaskRecord
from sluice.store import serialization

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler


class Recovery:
    """Kept lineage and pending rebuilds of one head. See the module docstring."""

    def __init__(self, max_lineage_bytes: int = L.DEFAULT_MAX_LINEAGE_BYTES):
        self.lineage = L.Lineage(max_lineage_bytes)   # the task behind each node-held result
        self.rebuilds = L.RebuildPlan(self.lineage)   # lost objects still to plan
        # Results a rebuild does not need get ids of an owner index no process is given
        # (taken from the scheduler's worker indices at the first rebuild).
        self.scratch_owner: int | None = None
        self.scratch_ids = itertools.count(1)

    # -- the scheduler's LineageKeeper ------------------------------------------------------
    def task_finished(self, task: TaskRecord, made: list[int]) -> None:
        ids = len(task.deps) + len(task.contained) + len(task.return_ids)
        self.lineage.record(task, made, task.deps, L.lineage_nbytes(len(task.args_blob), task.name, ids))

    def released(self, oid: int) -> None:
        self.lineage.release(oid)  # kept while a kept task reads it

    # -- rebuilds ------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Whether lost objects wait to be planned."""
        return self.rebuilds.pending

    def lost(self, oids: set[int], context: tuple[str, str]) -> None:
        """``oids`` (made pending by the scheduler) are to be rebuilt; ``context`` is (where
        they were, why it is gone), for the error of one that cannot be."""
        for oid in oids:
            self.rebuilds.add(oid, context)

    def step(self, s: Scheduler, budget: int = L.REBUILD_STEP) -> bool:
        """Plan (and submit) up to ``budget`` moves of pending rebuilds on ``s`` (under its
        lock); whether work remains."""
        more = self.rebuilds.step(SchedulerRebuildView(s, self), budget)
        s.dispatch()
        s.flush_all()
        return more

    def scratch_id(self, s: Scheduler) -> int:
        if self.scratch_owner is None:
            self.scratch_owner = next(s.worker_index)
        return (self.scratch_owner << OWNER_SHIFT) | next(self.scratch_ids)

    def lost_message(self, oid: int, failure: L.Failure, context: tuple[str, str]) -> str:
        where, why = context
        head = f"object {oid:x} was lost: its only copy was on {where}, which {why}"
        cause = failure.cause
        if failure.reason == L.EVICTED:
            whose = ("its lineage (the task that made it)" if cause == oid else
                     f"the lineage of object {cause:x}, which rebuilding it needs,")
            return (f"{head}, and it cannot be rebuilt: {whose} was evicted because the head keeps "
                    f"at most max_lineage_bytes={self.lineage.cap} bytes of lineage (the oldest "
                    f"objects' goes first). Raise the cap (sluice start --head --max-lineage-bytes "
                    f"N, or {L.ENV_MAX_LINEAGE_BYTES}), drop ObjectRefs you no longer need sooner, "
                    f"or keep a copy you cannot lose (sluice.get() it into the driver)")
        if failure.reason == L.NO_LINEAGE:
            how = ("it was stored by put() (or by an actor call), so nothing can compute it again"
                   if cause == oid else
                   f"rebuilding it needs object {cause:x}, which was freed and was stored by put() "
                   f"(or by an actor call), so nothing can compute it again")
        else:
            how = (f"an input of the task that made it (object {cause:x}) failed, so it cannot be "
                   f"computed again")
        return f"{head}; {how}. Keep the inputs alive (or put() it again) to survive node loss"


class SchedulerRebuildView:
    """The scheduler's object table and submission as a rebuild sees them
    (:class:`~sluice.executor.cluster.lineage.RebuildView`)."""

    def __init__(self, s: Scheduler, recovery: Recovery):
        self.s = s
        self.recovery = recovery

    def status(self, oid: int) -> int:
        entry = self.s.objects.get(oid)
        if entry is None:
            return L.GONE
        return L.FAILED if entry.state == FAILED else L.HELD

    def hold(self, oid: int) -> None:
        self.s.hold((oid,))

    def unhold(self, oid: int) -> None:
        self.s.unhold((oid,))

    def submit(self, task: TaskRecord, outputs: list[int]) -> None:
        s = self.s
        keep = set(outputs)
        return_ids = [oid if oid in keep else self.recovery.scratch_id(s) for oid in task.return_ids]
        s.submit(TaskRecord(next(s.task_ids), task.fn_id, task.name, task.args_blob, list(task.deps),
                            task.contained, return_ids, task.key, task.retries_left, task.retry_exc,
                            [], task.strategy))

    def fail(self, oid: int, failure: L.Failure, context: Any) -> None:
        s = self.s
        if oid in s.objects:
            error = ObjectReconstructionFailedLineageEvictedError if failure.reason == L.EVICTED \
                else ObjectReconstructionFailedError  # (Ray's names; both ObjectLostErrors)
            blob = serialization.dumps(error(self.recovery.lost_message(oid, failure, context)))
            s.add_object(oid, (P.DEP_ERROR, blob), ())
