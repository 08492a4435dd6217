"""The object half of the scheduler: entries, reference counts, waiters, slot recycling.

A mixin of :class:`~sluice.executor.scheduler.Scheduler`: it shares the
scheduler's state and lock, and exists to keep each module readable. Where a
stored value lives is the scheduler's injected
:class:`~sluice.executor.placement.ObjectLocations` (``self.locations``).
"""

from __future__ import annotations

from typing import Any

from sluice.exceptions import ObjectLostError
from sluice.executor import protocol as P
from sluice.executor.records import FAILED, PENDING, READY, ObjectEntry, TaskRecord, Waiter, WorkerHandle
from sluice.store import serialization


class ObjectTable:
    """Objects the driver tracks, and who waits for them. See the module docstring."""

    __slots__ = ()  # the state is the scheduler's (its __slots__)

    # -- reference counting ----------------------------------------------------------
    def apply_ref_events(self) -> None:
        """Fold queued ObjectRef births and deaths into the counts (under the lock)."""
        if self.actor_handle_events:
            self.actor_manager.apply_handle_events()
        events = self.ref_events
        objects = self.objects
        while events:
            delta, oid = events.popleft()
            entry = objects.get(oid)
            if entry is None:
                continue
            entry.refs += delta
            if delta < 0 and entry.freeable:
                self.free(oid)

    def free(self, oid: int) -> None:
        stack = [oid]
        while stack:
            oid = stack.pop()
            entry = self.objects.pop(oid, None)
            if entry is None:
                continue
            if self.lineage is not None:
                self.lineage.released(oid)
            if entry.spec is not None and entry.spec[0] == P.DEP_SHM:
                slot = self.locations.free(oid)
                if slot is not None:
                    self.recycle(slot)
            for cid in entry.contained:
                child = self.objects.get(cid)
                if child is not None:
                    child.holds -= 1
                    if child.freeable:
                        stack.append(cid)

    def recycle(self, slot: str) -> None:
        """Reuse ``slot`` once every process says no value read from it is alive."""
        waiting = {w for w in self.all_workers() if w.alive}
        if not waiting:
            self.locations.release_slot(slot)
            return
        self.releasing[slot] = waiting
        for w in waiting:
            w.out.append((P.RECYCLE, [slot]))
            self.dirty.add(w)

    def slots_released(self, w: WorkerHandle, names: list[str]) -> None:
        for name in names:
            waiting = self.releasing.get(name)
            if waiting is not None:
                waiting.discard(w)
                if not waiting:
                    del self.releasing[name]
                    self.locations.release_slot(name)
                    self.slot_released.set()

    def forget_worker_slots(self, w: WorkerHandle) -> None:
        """A dead process holds no views: it no longer delays any slot."""
        for name in [n for n, waiting in self.releasing.items() if w in waiting]:
            self.slots_released(w, [name])

    def broadcast_retired(self) -> None:
        """Readers unmap segments that left the store for good (freed, spilled, evicted)."""
        retired = self.locations.retired
        if retired:
            names = list(retired)
            retired.clear()
            for w in self.all_workers():
                w.out.append((P.RELEASE, names))
                self.dirty.add(w)

    def hold(self, ids) -> None:
        objects = self.objects
        for oid in ids:
            entry = objects.get(oid)
            if entry is not None:
                entry.holds += 1

    def unhold(self, ids) -> None:
        objects = self.objects
        for oid in ids:
            entry = objects.get(oid)
            if entry is not None:
                entry.holds -= 1
                if entry.freeable:
                    self.free(oid)

    # -- objects ---------------------------------------------------------------------
    def new_entry(self, oid: int, producer: TaskRecord | None) -> ObjectEntry:
        entry = self.objects.get(oid)
        if entry is None:
            entry = self.objects[oid] = ObjectEntry(producer)
        elif producer is not None:
            entry.producer = producer
        return entry

    def add_object(self, oid: int, spec: tuple, contained: tuple[int, ...],
                   stored_by: WorkerHandle | None = None) -> None:
        """A value was stored (put or task result): make it READY and wake its waiters.

        ``stored_by``: the process that wrote its shm segment, so the locations adopt it
        where that process runs (None: the driver stored it itself, already accounted).
        """
        entry = self.objects.get(oid)
        if entry is None:  # every ref died while it was computed
            if spec[0] == P.DEP_SHM:
                if stored_by is not None:
                    self.locations.adopt(oid, spec[1], stored_by.node)
                self.locations.free(oid)
            return
        if spec[0] == P.DEP_SHM and stored_by is not None:
            self.locations.adopt(oid, spec[1], stored_by.node)
        entry.spec = spec
        entry.state = FAILED if spec[0] == P.DEP_ERROR else READY
        entry.producer = None
        if contained:
            entry.contained = contained
            self.hold(contained)
        self.wake(oid, entry)
        if entry.freeable:
            self.free(oid)

    def wake(self, oid: int, entry: ObjectEntry) -> None:
        waiters, entry.waiters = entry.waiters, []
        for w in waiters:
            if type(w) is TaskRecord:
                w.unresolved -= 1
                if w.unresolved == 0:
                    self.make_ready(w)
            else:
                w.remaining -= 1
                if w.remaining == 0:
                    w.event.set()
        for req in self.requests.pop(oid, ()):
            req.remaining -= 1
            if req.remaining == 0:
                self.answer(req)

    def spec_for_worker(self, oid: int, w: WorkerHandle | None = None) -> tuple:
        """How worker ``w`` reads object ``oid`` (which must not be PENDING)."""
        entry = self.objects.get(oid)
        if entry is None:
            return (P.DEP_ERROR, serialization.dumps(ObjectLostError(
                f"object {oid:x} was freed: no ObjectRef held it any more")))
        spec = entry.spec
        if spec is None:  # lost with its node and being made again: nothing to read now
            return (P.DEP_ERROR, serialization.dumps(ObjectLostError(
                f"object {oid:x} was lost with its node and is being rebuilt; read it again once "
                f"it is ready")))
        if spec[0] == P.DEP_SHM:
            return self.locations.read_spec(oid, w)
        return spec

    # -- objects whose every copy is gone (a cluster node died) -------------------------
    def objects_lost(self, oids: list[int]) -> set[int]:
        """Stored objects whose every copy is gone (their node died): those ready turn pending
        again (their value is to be made again), and tasks not sent yet that read them wait
        for them as for any pending input. Returns the ids made pending."""
        lost = set()
        for oid in oids:
            entry = self.objects.get(oid)
            if entry is None or entry.state != READY:
                continue
            entry.state, entry.spec, entry.producer = PENDING, None, None
            if entry.contained:  # the rebuilt value brings its own
                contained, entry.contained = entry.contained, ()
                self.unhold(contained)
            lost.add(oid)
        if lost:
            self.wait_for_lost(lost)
        return lost

    def wait_for_lost(self, lost: set[int]) -> None:
        """Tasks not sent yet that read a ``lost`` object wait for it as for any pending input."""
        unqueue = set()
        for task in self.tasks.values():
            if task.worker is not None or task.local_to is not None:
                continue
            n = 0
            for oid in task.deps:
                if oid in lost:
                    self.objects[oid].waiters.append(task)
                    n += 1
            if n:
                if task.unresolved == 0 and task.actor is None:
                    unqueue.add(task)  # in a ready queue: it leaves it until the rebuild
                task.unresolved += n
        if unqueue:
            for q in self.ready.values():
                kept = [t for t in q if t not in unqueue]
                if len(kept) != len(q):
                    q.clear()
                    q.extend(kept)

    # -- helpers for the API -----------------------------------------------------------
    def waiter_for(self, ids: list[int], need: int, event: Any) -> Waiter | None:
        """Register a driver-side waiter for ``need`` of ``ids``; None if already satisfied."""
        pending = [self.objects[oid] for oid in ids
                   if oid in self.objects and self.objects[oid].state == PENDING]
        remaining = need - (len(ids) - len(pending))
        if remaining <= 0:
            return None
        waiter = Waiter(remaining, event)
        for entry in pending:
            entry.waiters.append(waiter)
        return waiter

    def drop_waiter(self, ids: list[int], waiter: Waiter) -> None:
        for oid in ids:
            entry = self.objects.get(oid)
            if entry is not None and waiter in entry.waiters:
                entry.waiters.remove(waiter)
