"""Actors in the driver: creation, ordered calls, restarts and death.

Each actor owns one worker process for its lifetime. Calls are sent in
submission order; a call whose arguments are not ready holds back the calls
behind it (the order a user observes is the order they called in). Which node
an actor starts on is the scheduler's :class:`~sluice.executor.placement.Placement`'s
choice (its ``scheduling_strategy`` first).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from sluice.exceptions import ObjectLostError, UnschedulableError
from sluice.executor import protocol as P
from sluice.executor.backend import ActorInfo
from sluice.executor.chain_driver import ChainSetups
from sluice.executor.counting import HandleCounts
from sluice.executor.strategies import PlacementGroupSchedulingStrategy
from sluice.executor.records import FAILED, ActorRecord, TaskRecord, WorkerHandle
from sluice.store import serialization

FLUSH_AT = 64

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler


class _StartWhenReady:
    """Waiter callback: the actor's constructor arguments are all ready."""

    __slots__ = ("manager", "actor")

    def __init__(self, manager: ActorManager, actor: ActorRecord):
        self.manager = manager
        self.actor = actor

    def set(self) -> None:
        self.actor.unresolved = 0
        self.manager.try_start(self.actor)


class ActorManager:
    """The actor half of the scheduler (its ``actor_manager``: shares its lock and state)."""

    def __init__(self, scheduler: Scheduler):
        self.s = scheduler
        self.waiting_for_resources: list[ActorRecord] = []
        self.handle_counts = HandleCounts(scheduler.actor_handle_events)  # driver handles
        self.retiring: set[int] = set()        # no handles left: stop once its queue is sent
        self.chains = ChainSetups(scheduler)   # forwarded actor chains, set up once each

    def apply_handle_events(self) -> None:
        """Count driver handles; an unnamed actor with none left (and none pickled) retires."""
        for actor_id in self.handle_counts.drain():
            actor = self.s.actors.get(actor_id)
            if actor is not None and actor.name is None and actor.options.get("lifetime") != "detached":
                self.retiring.add(actor_id)
                self.retire_if_idle(actor)

    def retire_if_idle(self, actor: ActorRecord) -> None:
        """Stop a retiring actor once every call made on it has been answered."""
        if actor.actor_id not in self.retiring or actor.queue or actor.state == ActorRecord.PENDING:
            return
        if actor.worker is not None and actor.worker.inflight:
            return  # asked again when its last call is answered
        self.retiring.discard(actor.actor_id)
        w = actor.worker
        self.mark_dead(actor, self.s.actor_died_blob(
            actor, "every handle to the actor was dropped, so it was stopped"))
        if w is not None and w.alive:
            w.out.append((P.SHUTDOWN,))  # it is idle: nothing is lost
            self.s.send(w)

    def create(self, actor: ActorRecord) -> None:
        s = self.s
        if actor.name is not None:
            key = (actor.namespace or "", actor.name)
            if key in s.named and s.actors[s.named[key]].state != ActorRecord.DEAD:
                if actor.options.get("get_if_exists"):
                    # Made by another caller since this one looked: its id reaches that actor.
                    s.actor_aliases[actor.actor_id] = s.named[key]
                    return
                raise ValueError(
                    f"an actor named {actor.name!r} already exists in namespace {key[0]!r}; pick "
                    f"another name, reach the existing one with sluice.get_actor({actor.name!r}), "
                    "or pass get_if_exists=True to .options()")
            s.named[key] = actor.actor_id
        s.actors[actor.actor_id] = actor
        s.hold(actor.deps)
        s.hold(actor.contained)
        waiter = s.waiter_for(actor.deps, len(actor.deps), _StartWhenReady(self, actor))
        if waiter is None:
            self.try_start(actor)
        else:
            actor.unresolved = waiter.remaining

    def try_start(self, actor: ActorRecord) -> None:
        if actor.state != ActorRecord.PENDING:
            return
        try:
            gpus = self.s.placement.place_actor(actor)
        except UnschedulableError as err:  # pinned to a node that is gone: it never starts
            self.mark_dead(actor, serialization.dumps(err))
            return
        if gpus is None:
            if actor not in self.waiting_for_resources:
                self.waiting_for_resources.append(actor)
            return
        actor.gpu_ids = gpus
        self.launch(actor)

    def launch(self, actor: ActorRecord) -> None:
        s = self.s
        failed = next((s.objects[o].spec[1] for o in actor.deps
                       if o in s.objects and s.objects[o].state == FAILED), None)
        if failed is not None:
            self.mark_dead(actor, failed)
            return
        index = next(s.worker_index)
        proc, conn = s.placement.spawn(index, actor.node) if actor.env is None else \
            s.placement.spawn(index, actor.node, actor.env)
        w = WorkerHandle(index, proc, conn)
        w.node = actor.node
        s.note_worker(w)
        w.env_id = actor.env.env_id if actor.env is not None else None
        w.actor = actor
        actor.worker = w
        actor.state = ActorRecord.ALIVE
        actor.ready = False
        deps = [s.spec_for_worker(oid, w) for oid in actor.deps]
        w.out.append((P.ACTOR_CREATE, actor.cls_bytes, actor.args_blob, deps,
                      actor.options.get("max_concurrency"), actor.class_name,
                      actor.gpu_ids if s.has_gpus else None))
        s.conns_changed = True
        self.pump(actor)
        s.send(w)
        s.io.wake()

    def call_method(self, actor_id: int, method: str, name: str, blob: bytes, deps: list[int],
                    contained: tuple[int, ...], return_ids: list[int], keep: list,
                    stream: tuple | None = None) -> None:
        """Call ``method`` on actor ``actor_id`` (whose results ``return_ids`` have entries);
        ``stream``: ``(backpressure threshold, consumer)`` for a streaming call, the consumer
        None for the driver's own threads (executor/generators.py)."""
        s = self.s
        actor = self.lookup(actor_id)
        retries = 0 if actor is None else int(actor.options.get("max_task_retries", 0))
        task = TaskRecord(next(s.task_ids), 0, name, blob, deps, contained, return_ids, (), retries,
                          False, keep)
        task.method = method
        if stream is not None:
            s.open_stream(task, stream[0], stream[1])
        if actor is None:  # (queued, it would run as a function task with no function)
            s.refuse(task, serialization.dumps(ObjectLostError(
                f"no actor with id {actor_id:x} in this runtime; it belongs to an earlier session")))
            return
        task.actor = actor
        self.call(task)
        if stream is not None:
            s.watch_stream_end(task)

    def call(self, task: TaskRecord) -> None:
        """Queue an actor method call behind the earlier ones."""
        actor = task.actor
        actor.queue.append(task)
        self.s.submit(task)
        if actor.state == ActorRecord.DEAD:
            self.pump(actor)

    def pump(self, actor: ActorRecord) -> None:
        """Send the calls at the head of the queue whose arguments are ready."""
        s = self.s
        q = actor.queue
        if actor.state == ActorRecord.DEAD:
            while q:
                s.finish_failed(q.popleft(), actor.death)
            return
        if actor.state != ActorRecord.ALIVE:
            return
        w = actor.worker
        while q and q[0].unresolved == 0:
            task = q.popleft()
            if task.cancelled:
                continue
            failed = s.failed_dep(task)
            if failed is not None:
                s.finish_failed(task, failed)
                continue
            deps = []
            for oid in task.deps:
                spec = s.spec_for_worker(oid, w)
                if spec[0] == P.DEP_SHM:
                    s.locations.pin(oid)
                    task.pinned.append(oid)
                deps.append(spec)
            task.worker = w
            w.inflight[task.task_id] = task
            w.queued_bytes += len(task.args_blob)
            w.unsent += 1
            if task.chain is not None:  # (chain id, overrides, the first value's spec or None)
                chain_id, overrides, first = task.chain
                w.out.append((P.CHAIN, task.task_id, chain_id, deps if first is None else [first],
                              overrides, task.return_ids))
            else:
                w.out.append((P.ACTOR_CALL, task.task_id, task.method, task.args_blob, deps,
                              task.return_ids, task.name,
                              None if task.stream is None else task.stream.dispatch_field()))
        if len(w.out) >= FLUSH_AT:
            s.send(w)
        elif w.out:
            s.mark_dirty(w)
        if not q and actor.actor_id in self.retiring:
            self.retire_if_idle(actor)

    def on_ready(self, w: WorkerHandle) -> None:
        w.actor.ready = True

    def on_constructor_failed(self, w: WorkerHandle, blob: bytes) -> None:
        actor = w.actor
        self.mark_dead(actor, blob)
        w.out.append((P.SHUTDOWN,))
        self.s.send(w)

    def lookup(self, actor_id: int) -> ActorRecord | None:
        """Actor ``actor_id``, or the live one its get_if_exists creation found (None: unknown)."""
        actor = self.s.actors.get(actor_id)
        if actor is None and actor_id in self.s.actor_aliases:
            actor = self.s.actors.get(self.s.actor_aliases[actor_id])
        return actor

    def kill(self, actor_id: int, no_restart: bool) -> None:
        actor = self.lookup(actor_id)
        if actor is None:
            return
        if no_restart:
            self.mark_dead(actor, self.s.actor_died_blob(
                actor, "the actor was killed by sluice.kill(); create a new one to go on"))
        w = actor.worker
        if w is not None and w.alive:
            try:
                w.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass

    def mark_dead(self, actor: ActorRecord, blob: bytes) -> None:
        if actor.state == ActorRecord.DEAD:
            return
        actor.state = ActorRecord.DEAD
        actor.death = blob
        self.fail_chains_through(actor.actor_id, blob)
        if actor.gpu_ids is not None:
            self.s.placement.node_resources(actor.node).release(actor.key, actor.gpu_ids)
            actor.gpu_ids = None
            self.retry_waiting()
        self.s.unhold(actor.deps)
        self.s.unhold(actor.contained)
        actor.keep = []
        key = (actor.namespace or "", actor.name)
        if actor.name is not None and self.s.named.get(key) == actor.actor_id:
            del self.s.named[key]
        self.pump(actor)

    def died(self, w: WorkerHandle) -> None:
        """An actor's process exited: restart it, or fail its calls for good."""
        s = self.s
        if not w.alive:
            return
        w.alive = False
        s.conns_changed = True
        s.dirty.discard(w)
        actor = w.actor
        code = w.proc.poll()
        s.forget_worker_slots(w)
        s.consumer_gone(w)  # the generators it iterated
        if actor.state != ActorRecord.DEAD and actor.restarts_left > 0:
            actor.restarts_left -= 1
            actor.restarted = True
            lost = s.actor_died_blob(actor, f"the actor's process died (exit code {code}) while this "
                                            "call was running; the actor was restarted for later "
                                            "calls (max_task_retries retries such calls)")
            self.requeue_retried(w, actor)
            self.fail_inflight(w, lost)
            actor.state = ActorRecord.PENDING
            if s.placement.actor_node_alive(actor):
                self.launch(actor)
            else:  # its node died with it: place it again where resources are free
                actor.gpu_ids = None
                self.try_start(actor)
            return
        if actor.state != ActorRecord.DEAD:
            self.mark_dead(actor, s.actor_died_blob(
                actor, f"the actor's process died (exit code {code}) and max_restarts is spent"))
        self.fail_inflight(w, actor.death)

    def requeue_retried(self, w: WorkerHandle, actor: ActorRecord) -> None:
        """Put the calls in flight on ``w`` that have retries left (``max_task_retries``) back
        at the head of the restarting actor's queue, in call order; the rest stay on ``w``."""
        retried = sorted((t for t in w.inflight.values()
                          if t.retries_left > 0 and not t.cancelled and t.chain is None),
                         key=lambda t: t.task_id)
        for task in reversed(retried):
            del w.inflight[task.task_id]
            task.retries_left -= 1
            for oid in task.pinned:
                self.s.locations.unpin(oid)
            task.pinned = []
            task.worker = None
            actor.queue.appendleft(task)

    def fail_inflight(self, w: WorkerHandle, blob: bytes) -> None:
        for task in list(w.inflight.values()):
            self.s.finish_failed(task, blob)
        w.inflight.clear()
        self.fail_chains_through(w.actor.actor_id, blob)

    def fail_chains_through(self, actor_id: int, blob: bytes) -> None:
        """Chains that pass through a dead actor can never finish: fail them."""
        self.chains.forget_actor(actor_id)
        for task in [t for t in self.s.tasks.values() if actor_id in t.chain_actors]:
            if task.worker is not None:
                task.worker.inflight.pop(task.task_id, None)
            self.s.finish_failed(task, blob)

    def retry_waiting(self) -> None:
        """Resources were freed: reserve pending placement groups, then start waiting actors."""
        if self.s.pgs.pending:
            self.s.pgs.retry()
        waiting, self.waiting_for_resources = self.waiting_for_resources, []
        for actor in waiting:
            self.try_start(actor)

    def check_feasible(self, actor: ActorRecord) -> None:
        """Raise when no node could ever start ``actor``: its resources
        (:class:`~sluice.exceptions.InfeasibleResourceError`), or a hard node affinity to
        a node that is not there (:class:`~sluice.exceptions.UnschedulableError`)."""
        what = f"actor {actor.class_name}"
        strategy = actor.options.get("scheduling_strategy")
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            self.s.pgs.check_usable(strategy.placement_group.id, what)
            return
        self.s.resources.check_feasible(actor.key, what)
        self.s.placement.check_strategy(strategy, what)

    def find_named(self, name: str, namespace: str) -> ActorInfo | None:
        """The live actor created with ``name`` in ``namespace``, or None."""
        actor_id = self.s.named.get((namespace, name))
        if actor_id is None:
            return None
        actor = self.s.actors[actor_id]
        return ActorInfo(actor.actor_id, actor.class_name, actor.options.get("_methods", {}))


    def list_named(self, namespace: str | None) -> list[dict[str, str]]:
        """The live named actors, of ``namespace`` or (None) of every namespace."""
        return [{"name": name, "namespace": ns} for (ns, name) in self.s.named
                if namespace is None or ns == namespace]
