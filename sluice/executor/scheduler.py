"""The scheduler: objects, tasks, worker leases, actors and dispatch, as state plus transitions.

All state lives here and changes only under ``self.lock``. Two threads enter:
the user's thread (submit, get, put, ...) and the I/O thread that reads worker
pipes (``io.py``). Neither hops to the other per task: the submitting thread
dispatches directly, and results are applied by the I/O thread a batch at a time.

What differs between one machine and a cluster is injected behind the Protocols of
``placement.py``: a :class:`~sluice.executor.placement.Placement` (which node a
ready task or an actor goes to, node resources, starting workers), the
:class:`~sluice.executor.placement.ObjectLocations` of stored values, an optional
:class:`~sluice.executor.placement.LineageKeeper`, and the
:class:`~sluice.executor.placement.WorkerIO` thread. The embedded runtime builds it
with the local ones; the cluster head with its placement policy and object directory.
The same code runs both: nothing here knows which it is.

Worker leases, pipelining and the pool of processes are the worker-pool half
(``worker_pool.py``, a mixin sharing this state), as objects are ``objects.py``'s.

Nested gets (``nesting.py``): a task waiting in a get runs the tasks it waits for
inside its own worker, on its own lease; it lends its CPUs only while it has nothing to run.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections import deque
from typing import Any

from sluice.exceptions import (
    ActorDiedError,
    InternalError,
    TaskCancelledError,
    UnschedulableError,
    WorkerCrashedError,
)
from sluice.executor import nesting
from sluice.executor import protocol as P
from sluice.executor.actors import ActorManager
from sluice.executor.generators import StreamTable
from sluice.executor.objects import ObjectTable
from sluice.executor.placement import (
    LineageKeeper,
    ObjectLocations,
    Placement,
    ResourceTotals,
    WorkerIO,
)
from sluice.executor.records import (
    FAILED,
    PENDING,
    ActorRecord,
    JobInfo,
    ObjectEntry,
    TaskRecord,
    WorkerHandle,
    WorkerRequest,
)
from sluice.executor.placement_groups import PlacementGroups
from sluice.executor.resources import ResourceKey
from sluice.executor.runtime_env import RuntimeEnvs
from sluice.executor.strategies import PlacementGroupSchedulingStrategy
from sluice.executor.metrics_table import MetricsTable
from sluice.executor.state import WORKERS_KEPT, ended_entry, task_log_capacity
from sluice.executor.worker_pool import WorkerPool
from sluice.store import serialization

FLUSH_AT = 64


class Scheduler(ObjectTable, StreamTable, WorkerPool):
    """Owns every object, task, worker and actor of one driver (or cluster head).

    ``resources``: the totals of all nodes, for feasibility checks; ``placement``,
    ``locations``, ``io`` and ``lineage``: see the module docstring.

    Slotted: its state is the fields set in ``__init__``, and a new one goes into
    ``__slots__`` too. (In a plain instance dict, CPython 3.11 stops sharing keys past 29
    attributes and every attribute read gets slower: 8% more driver time per task here.)
    """

    __slots__ = ("session", "resources", "placement", "locations", "io", "lineage", "lock",
                 "objects", "tasks", "ready", "workers", "clients", "feasible", "actors", "named",
                 "functions", "durations", "dirty", "task_ids", "worker_index", "ref_events",
                 "requests", "releasing", "chains_in_flight", "actor_handle_events", "retired",
                 "slot_released", "inbox", "conns_changed", "closed", "has_gpus", "actor_manager",
                 "blocking_fns", "start_hold", "driver_job", "client_jobs", "actor_aliases",
                 "envs", "streams", "streams_closing", "pgs", "task_log", "ended", "metrics",
                 "worker_info")

    def __init__(self, session: str, resources: ResourceTotals, placement: Placement,
                 locations: ObjectLocations, io: WorkerIO, lineage: LineageKeeper | None = None,
                 envs: RuntimeEnvs | None = None):
        self.session = session
        self.resources = resources
        self.placement = placement
        self.locations = locations
        self.io = io
        self.lineage = lineage
        self.lock = threading.RLock()
        self.objects: dict[int, ObjectEntry] = {}
        self.tasks: dict[int, TaskRecord] = {}        # submitted, not finished
        self.ready: dict[Any, deque[TaskRecord]] = {}  # task.lane -> ready tasks, oldest first
        self.workers: list[WorkerHandle] = []          # pool workers (not actors)
        self.clients: dict[int, WorkerHandle] = {}     # connected drivers (a cluster head's)
        self.feasible: set[ResourceKey] = set()        # demands some node can meet (checked once)
        self.actors: dict[int, ActorRecord] = {}
        self.named: dict[tuple[str, str], int] = {}  # (namespace, name) -> live actor id
        # get_if_exists creations that found their name taken here: their id -> the live actor's
        self.actor_aliases: dict[int, int] = {}
        self.functions: dict[int, bytes] = {}
        self.durations: dict[int, float] = {}          # fn id -> smoothed seconds per call
        self.dirty: set[WorkerHandle] = set()
        self.task_ids = itertools.count(1)
        self.worker_index = itertools.count(1)
        self.ref_events: deque = deque()
        self.requests: dict[int, list] = {}            # object id -> WorkerRequests waiting
        self.releasing: dict[str, set[WorkerHandle]] = {}  # slot -> workers yet to release it
        self.chains_in_flight = 0                      # forwarded actor chains not finished
        self.actor_handle_events: deque = deque()      # (+1 | -1 | 0 pickled, actor id)
        self.retired: list[WorkerHandle] = []          # stopped extra workers, until reaped
        self.slot_released = threading.Event()
        self.inbox: deque = deque()                    # (worker, batch | None for EOF) to apply
        self.conns_changed = True
        self.closed = False
        # With GPUs in the runtime every task is told its GPU ids ([] hides them all, as Ray does).
        self.has_gpus = resources.total.get("GPU", 0) > 0
        self.actor_manager = ActorManager(self)        # the actor half: shares this state and lock
        self.blocking_fns: set[int] = set()            # functions whose tasks called get or wait
        self.start_hold: float | None = None           # when a held-back process start began
        # Jobs: the embedded runtime's own driver (None on a cluster head), and each connected
        # driver's (a cluster head's), by its process index.
        self.driver_job: JobInfo | None = None
        self.client_jobs: dict[int, JobInfo] = {}
        # runtime_env -> PreparedEnv (a cluster head takes files only as shipped packages)
        self.envs = envs if envs is not None else RuntimeEnvs(files=False)
        self.streams: dict[int, Any] = {}              # generator id -> Stream (generators.py)
        self.streams_closing: list[int] = []           # generators dropped while the lock was held
        self.pgs = PlacementGroups(self)               # placement groups: their reservations
        # Ended tasks, newest last, as compact tuples (the state API's; see state.py)
        self.task_log: deque = deque(maxlen=task_log_capacity())
        self.ended = [0, 0]                            # tasks finished, failed (ever)
        self.worker_info: dict[int, tuple] = {}        # worker index -> (pid, node)
        self.metrics = MetricsTable()                  # user metrics of every process

    def note_worker(self, w: WorkerHandle) -> None:
        """Remember a new worker's pid and node for the state API (the newest
        :data:`~sluice.executor.state.WORKERS_KEPT`)."""
        info = self.worker_info
        info[w.index] = (getattr(w.proc, "pid", None), w.node)
        if len(info) > WORKERS_KEPT:
            del info[next(iter(info))]

    def job_of(self, w: WorkerHandle) -> JobInfo | None:
        """The job whose work process ``w`` is doing: a driver's own, an actor's creator's, or
        that of a task it runs (None: the embedded runtime's driver)."""
        job = self.client_jobs.get(w.index)
        if job is not None:
            return job
        if w.actor is not None:
            return w.actor.job
        for task in w.inflight.values():
            return task.job
        return None

    def locked(self) -> _Locked:
        """``with scheduler.locked():`` holds the lock, then applies worker batches queued meanwhile."""
        return _Locked(self)

    def all_workers(self):
        """Every process that reads objects: pool workers, live actors, connected drivers."""
        yield from self.workers
        for actor in self.actors.values():
            if actor.worker is not None and actor.worker.alive:
                yield actor.worker
        yield from self.clients.values()

    def check_task(self, key: ResourceKey, strategy: Any, what: str) -> None:
        """Raise when no node could ever run a task of demand ``key`` and ``strategy``:
        :class:`~sluice.exceptions.InfeasibleResourceError` or
        :class:`~sluice.exceptions.UnschedulableError`, naming ``what``. A task of a
        placement group was checked against its bundles already; its group must be usable."""
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            self.pgs.check_usable(strategy.placement_group.id, what)
            return
        if key not in self.feasible:
            self.resources.check_feasible(key, what)
            self.feasible.add(key)
        if strategy is not None:
            self.placement.check_strategy(strategy, what)

    # -- submission ------------------------------------------------------------------
    def submit(self, task: TaskRecord) -> None:
        """Register a task and its results; run it as soon as its inputs are ready."""
        self.tasks[task.task_id] = task
        for oid in task.return_ids:
            self.new_entry(oid, task)
        if task.deps:
            self.hold(task.deps)
        if task.contained:
            self.hold(task.contained)
        self.resolve(task)

    def refuse(self, task: TaskRecord, blob: bytes) -> None:
        """A task refused on arrival (it can never run): its results fail with ``blob`` at
        once. It is never queued, so no worker ever runs it, and it holds nothing."""
        for oid in task.return_ids:
            self.new_entry(oid, None)
            self.add_object(oid, (P.DEP_ERROR, blob), ())

    def resolve(self, task: TaskRecord) -> None:
        """Count the task's pending inputs; queue it now if there are none."""
        objects = self.objects
        pending = 0
        producer_worker = None
        local_ok = task.actor is None and not task.retry_exc
        for oid in task.deps:
            entry = objects.get(oid)
            if entry is None:
                continue  # the error surfaces when the task is dispatched
            if entry.state == PENDING:
                pending += 1
                entry.waiters.append(task)
                prod = entry.producer
                w = prod.worker if prod is not None else None
                if prod is not None and prod.retry_exc:
                    local_ok = False
                if w is None or w.actor is not None or (producer_worker not in (None, w)):
                    local_ok = False
                producer_worker = w
            elif entry.state == FAILED:
                local_ok = False
        task.unresolved = pending
        if pending == 0:
            self.make_ready(task)
        elif local_ok and producer_worker is not None and producer_worker.lease == task.key \
                and producer_worker.env_id == (task.env.env_id if task.env is not None else None) \
                and not producer_worker.blocked and self.may_follow(producer_worker, task) \
                and (task.strategy is None or self.placement.may_run_on(task, producer_worker.node)):
            # Pipeline behind its producer: the worker feeds it the result locally.
            self.send_task(task, producer_worker, local=True)

    def make_ready(self, task: TaskRecord) -> None:
        if task.local_to is not None:
            return  # already queued on the worker that produces its inputs
        if task.actor is not None:
            self.actor_manager.pump(task.actor)
            return
        failed = self.failed_dep(task)
        if failed is not None:
            self.finish_failed(task, failed)
            return
        q = self.ready.get(task.lane)
        if q is None:
            q = self.ready[task.lane] = deque()
        q.append(task)
        if self.requests:  # a worker may be waiting for it in a get: it may run it itself
            nesting.offer(self, task)

    def failed_dep(self, task: TaskRecord) -> bytes | None:
        for oid in task.deps:
            entry = self.objects.get(oid)
            if entry is None:
                return self.spec_for_worker(oid)[1]
            if entry.state == FAILED:
                return entry.spec[1]
        return None

    # -- dispatch --------------------------------------------------------------------
    def dispatch(self) -> None:
        """Hand ready tasks to workers, on the nodes the placement names, while resources and
        pipelines allow. The head of a lane that finds no worker holds back the rest of it
        (they have its demand and, if pinned, its node)."""
        route = unschedulable = None
        for q in self.ready.values():
            while q:
                task = q[0]
                if route is None:
                    route = self.placement.dispatch_pass()
                try:
                    nodes = route.nodes_for(task)
                except UnschedulableError as err:
                    unschedulable = unschedulable or []
                    unschedulable.append((q.popleft(), err))
                    continue
                for node in nodes:
                    w = self.pick_worker(task.key, task.fn_id, node, not task.from_task, task.env)
                    if w is not None:
                        break
                else:
                    break
                if node is not nodes[0]:
                    route.spilled(task, node)
                self.send_task(q.popleft(), w)
        for task, err in unschedulable or ():  # after the walk: failing wakes (and fails) readers
            self.finish_failed(task, serialization.dumps(err))

    def send_task(self, task: TaskRecord, w: WorkerHandle, local: bool = False,
                  nested: bool = False) -> None:
        """Queue ``task`` on ``w`` (``local``: behind the producer of its inputs there;
        ``nested``: to run inside the get ``w`` waits in, see nesting.py)."""
        deps = []
        for oid in task.deps:
            entry = self.objects.get(oid)
            if local and entry is not None and entry.state == PENDING:
                deps.append((P.DEP_LOCAL, oid))
                continue
            spec = self.spec_for_worker(oid, w)
            if spec[0] == P.DEP_SHM:
                self.locations.pin(oid)
                task.pinned.append(oid)
            deps.append(spec)
        if local:
            task.local_to = w
        fn_bytes = None
        if task.fn_id not in w.known_fns:
            fn_bytes = self.functions[task.fn_id]
            w.known_fns.add(task.fn_id)
        task.worker = w
        w.inflight[task.task_id] = task
        w.queued_bytes += len(task.args_blob)
        w.unsent += 1
        if task.max_calls:
            self.count_call(w, task)
        msg = (P.TASK, task.task_id, task.fn_id, fn_bytes, task.args_blob, deps, task.return_ids,
               task.retry_exc, w.gpu_ids if self.has_gpus else None, task.name,
               None if task.stream is None else task.stream.dispatch_field())
        w.out.append((P.NESTED, len(w.nest_waits), msg) if nested else msg)
        if len(w.out) >= FLUSH_AT:
            self.send(w)
        else:
            self.mark_dirty(w)

    def mark_dirty(self, w: WorkerHandle) -> None:
        """Send now if ``w`` has nothing else to do; else batch.

        A busy worker's queued messages go out with the next flush: after its next
        result batch is applied, at a get/wait, or when FLUSH_AT pile up. So a
        burst of submissions costs a few large pipe writes, and a lone task one.
        """
        if len(w.inflight) <= w.unsent:
            self.send(w)
        else:
            self.dirty.add(w)

    def send(self, w: WorkerHandle) -> None:
        self.dirty.discard(w)
        if not w.out or not w.alive:
            return
        batch, w.out = w.out, []
        w.unsent = 0
        try:
            w.conn.send_bytes(P.pack(batch))
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the I/O thread sees the EOF and handles the death

    def flush_all(self) -> None:
        if self.locations.retired:
            self.broadcast_retired()
        for w in list(self.dirty):
            self.send(w)

    # -- results ---------------------------------------------------------------------
    def task_done(self, w: WorkerHandle, task_id: int, results: list, seconds: float,
                  started: float) -> None:
        task = self.take_inflight(w, task_id)
        if task is None:
            return  # a stale result (the task was bounced or cancelled meanwhile)
        self.note_duration(task.fn_id, seconds)
        if self.lineage is not None and task.actor is None and not task.cancelled:
            # Before finish() releases the inputs: an input freed then keeps its lineage,
            # since this result's lineage reads it.
            made = [oid for oid, spec, _ in results if spec[0] == P.DEP_SHM and oid in self.objects]
            if made:
                self.lineage.task_finished(task, made)
        self.finish(task)
        nbytes = 0
        for oid, spec, contained in results:
            nbytes += spec[1] if spec[0] == P.DEP_SHM else len(spec[1])
            if task.cancelled:
                if spec[0] == P.DEP_SHM:
                    self.locations.adopt(oid, spec[1], w.node)
                    self.locations.free(oid)
                continue
            self.add_object(oid, spec, contained, stored_by=w)
        # The state API's record (see state.py; inline: this is every task's path).
        actor, job, rids = task.actor, task.job, task.return_ids
        self.task_log.append((task.task_id, task.name, actor and actor.actor_id,
                              job and job.job_id, task.parent, task.submitted, started,
                              seconds, w.index, None, rids[0] if len(rids) == 1 else
                              tuple(rids), nbytes))
        self.ended[0] += 1
        self.release_lease(w)

    def task_failed(self, w: WorkerHandle, task_id: int, blob: bytes, retryable: bool,
                    seconds: float, started: float) -> None:
        task = self.take_inflight(w, task_id)
        if task is None:
            return
        self.note_duration(task.fn_id, seconds)
        task.started, task.ran = started, seconds
        if retryable and task.retries_left > 0 and not task.cancelled:
            task.retries_left -= 1
            self.requeue(task)
        else:
            self.finish_failed(task, blob)
        self.release_lease(w)

    def take_inflight(self, w: WorkerHandle, task_id: int) -> TaskRecord | None:
        task = w.inflight.pop(task_id, None)
        if task is None:  # a chain's result comes from its last actor, not where it was sent
            task = self.tasks.get(task_id)
            if task is None or task.chain is None or task.worker is None:
                return None
            w = task.worker
            w.inflight.pop(task_id, None)
        w.queued_bytes -= len(task.args_blob)
        if w.nested:
            nesting.forget(w, task_id)  # the caller settles w once the result is applied
        return task

    def note_duration(self, fn_id: int, seconds: float) -> None:
        old = self.durations.get(fn_id)
        self.durations[fn_id] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def finish(self, task: TaskRecord) -> None:
        """Drop everything a finished task held: pins, argument holds, keep-alive refs."""
        if self.tasks.pop(task.task_id, None) is not None and task.chain is not None:
            self.chains_in_flight -= 1
        task.worker = None
        task.local_to = None
        for oid in task.pinned:
            self.locations.unpin(oid)
        task.pinned = []
        self.unhold(task.deps)
        self.unhold(task.contained)
        task.keep = []

    def finish_failed(self, task: TaskRecord, blob: bytes) -> None:
        self.task_log.append(ended_entry(task, task.worker, task.started, task.ran, blob))
        self.ended[1] += 1
        self.finish(task)
        for oid in task.return_ids:
            if oid in self.objects and self.objects[oid].state == PENDING:
                self.add_object(oid, (P.DEP_ERROR, blob), ())

    def requeue(self, task: TaskRecord) -> None:
        """Send a task through scheduling again (retry, or handed back unstarted)."""
        for oid in task.pinned:
            self.locations.unpin(oid)
        task.pinned = []
        task.worker = None
        task.local_to = None
        if task.actor is not None:
            raise InternalError("actor calls are never requeued")
        for oid in task.deps:  # a pipelined task may still be listed as waiting
            entry = self.objects.get(oid)
            if entry is not None and task in entry.waiters:
                entry.waiters.remove(task)
        self.resolve(task)

    def bounce(self, w: WorkerHandle, task_ids: list[int]) -> None:
        for tid in task_ids:
            task = self.take_inflight(w, tid)
            if task is not None:
                self.requeue(task)
        if w.blocked:
            nesting.settle(self, w)

    def cancel(self, oid: int, force: bool, recursive: bool = False) -> None:
        """Cancel the unfinished task producing ``oid`` (see :func:`sluice.cancel`);
        ``recursive``: first the unfinished tasks it submitted, and theirs, leaves first."""
        entry = self.objects.get(oid)
        if entry is None or entry.state != PENDING or entry.producer is None:
            return
        task = entry.producer
        if recursive:
            for child in reversed(self.descendants(task)):
                if not child.cancelled and child.return_ids:
                    self.cancel_task(child, child.return_ids[0], force)
        self.cancel_task(task, oid, force)

    def descendants(self, task: TaskRecord) -> list[TaskRecord]:
        """The unfinished tasks ``task`` submitted, and the ones they submitted, parents first."""
        by_parent: dict[int, list[TaskRecord]] = {}
        for t in self.tasks.values():
            if t.parent is not None:
                by_parent.setdefault(t.parent, []).append(t)
        found: list[TaskRecord] = []
        frontier = [task.task_id]
        while frontier:  # iterate, not recurse: nesting may be deep
            children = by_parent.get(frontier.pop(), ())
            found.extend(children)
            frontier.extend(child.task_id for child in children)
        return found

    def cancel_task(self, task: TaskRecord, oid: int, force: bool) -> None:
        """Cancel ``task``, whose result ``oid`` a caller named."""
        if task.actor is not None:
            self.cancel_actor_call(task, oid)
            return
        blob = serialization.dumps(TaskCancelledError(f"task {task.name} was cancelled"))
        task.cancelled = True
        # Waiting for an input, or queued on the worker making it (it may report the cancel
        # before that input): either way the input's arrival must not make the task ready.
        for dep in task.deps:
            dep_entry = self.objects.get(dep)
            if dep_entry is not None and task in dep_entry.waiters:
                dep_entry.waiters.remove(task)
        w = task.worker
        if w is None:
            for q in self.ready.values():
                if task in q:
                    q.remove(task)
        elif force and w.actor is None and not any(task.task_id in level for level in w.nested):
            self.take_inflight(w, task.task_id)
            kill_process(w)
        else:  # queued on a worker: it drops the task unless it already started
            w.out.append((P.CANCEL_TASK, task.task_id))
            self.send(w)
        self.finish_failed_keep_worker(task, blob)

    def cancel_actor_call(self, task: TaskRecord, oid: int) -> None:
        """Cancel an actor call, as Ray does: one still queued here is dropped (its results
        fail with TaskCancelledError); one sent to the actor's process is dropped there if it
        has not started, cancelled at its next ``await`` on an async actor, and otherwise
        runs on (flagged: ``get_runtime_context().is_canceled()``); that process says how it
        ended. A chain's calls are not cancelled one by one."""
        if task.chain is not None:
            return
        blob = serialization.dumps(TaskCancelledError(f"actor method {task.name} was cancelled"))
        w = task.worker
        if w is None:
            actor = task.actor
            if task in actor.queue:
                actor.queue.remove(task)
                task.cancelled = True
                for dep in task.deps:
                    entry = self.objects.get(dep)
                    if entry is not None and task in entry.waiters:
                        entry.waiters.remove(task)
                self.finish_failed(task, blob)
                self.actor_manager.pump(actor)  # the calls behind it may be ready
            return
        w.out.append((P.CANCEL_TASK, task.task_id))
        self.send(w)
        if task.stream is not None:  # a running generator method stops at its next item
            task.cancelled = True
            self.add_object(oid, (P.DEP_ERROR, blob), ())

    def finish_failed_keep_worker(self, task: TaskRecord, blob: bytes) -> None:
        for oid in task.return_ids:
            entry = self.objects.get(oid)
            if entry is not None and entry.state == PENDING:
                self.add_object(oid, (P.DEP_ERROR, blob), ())
        if task.worker is None:
            self.finish(task)

    # -- worker requests (nested get/wait) -------------------------------------------
    def worker_get(self, w: WorkerHandle, req_id: int, ids: list[int], is_wait: bool, num: int,
                   query_now: bool, nest: bool = False) -> None:
        """A worker's get or wait (``is_wait``: for ``num`` of ``ids``): answered now if it
        can be, else when the objects are ready. ``nest``: meanwhile the worker may run
        the tasks it waits for itself (nesting.py)."""
        if w.actor is None and w.inflight:
            # A function that gets may wait: queue nothing behind its tasks (pick_worker,
            # nesting.top_up). The caller is the innermost task running in w.
            running = w.nested[-1][0] if w.nested else next(iter(w.inflight))
            if running in w.inflight:
                self.blocking_fns.add(w.inflight[running].fn_id)
        pending = [oid for oid in ids if oid in self.objects and self.objects[oid].state == PENDING]
        need = len(pending) - (len(ids) - num) if is_wait else len(pending)
        req = WorkerRequest(w, req_id, ids, max(0, need), is_wait)
        if need <= 0 or query_now:
            self.answer(req, blocked=False)
            return
        for oid in pending:
            self.requests.setdefault(oid, []).append(req)
        if nest and not is_wait and w.actor is None:
            w.nest_waits.append(req)
        self.block_worker(w)

    def block_worker(self, w: WorkerHandle) -> None:
        """``w`` waits for the driver's answer (a get, wait, or a generator's next item):
        its queued tasks go back to run elsewhere, its CPUs may be lent (nesting.py)."""
        if w.actor is None and w.blocked == 0 and w.lease is not None:
            w.out.append((P.RELINQUISH,))
            self.dirty.add(w)
        w.blocked += 1
        nesting.settle(self, w)

    def unblock_worker(self, w: WorkerHandle) -> None:
        """The answer :meth:`block_worker` waited for is on its way to ``w``."""
        w.blocked -= 1
        nesting.settle(self, w)

    def answer(self, req: WorkerRequest, blocked: bool = True) -> None:
        w = req.worker
        if not w.alive:
            return
        if req.is_wait:
            ready = [oid for oid in req.ids if oid not in self.objects
                     or self.objects[oid].state != PENDING]
            w.out.append((P.WAIT_REPLY, req.req_id, ready))
        else:
            w.out.append((P.GET_REPLY, req.req_id, [self.spec_for_worker(oid, w) for oid in req.ids]))
        if blocked:
            for oid in req.ids:  # a satisfied wait leaves stale entries behind; drop them
                lst = self.requests.get(oid)
                if lst and req in lst:
                    lst.remove(req)
                    if not lst:
                        del self.requests[oid]
            if w.nest_waits and req in w.nest_waits:
                w.nest_waits.remove(req)
            self.unblock_worker(w)
        self.send(w)

    # -- worker death ----------------------------------------------------------------
    def worker_died(self, w: WorkerHandle) -> None:
        """A pool worker's pipe closed: retry what it was running, free what it held."""
        if not w.alive:
            return
        w.alive = False
        self.conns_changed = True
        if w in self.workers:
            self.workers.remove(w)
        self.dirty.discard(w)
        if w.lease is not None:
            if w.lent:
                self.res_of(w).force_acquire(w.lease)
                w.lent = False
            self.res_of(w).release(w.lease, w.gpu_ids)
            w.lease = None
        w.nested, w.nest_waits = [], []
        for reqs in self.requests.values():
            reqs[:] = [r for r in reqs if r.worker is not w]
        self.consumer_gone(w)
        self.forget_worker_slots(w)
        code = w.proc.poll()
        for task in list(w.inflight.values()):
            if task.cancelled:
                self.finish(task)
            elif task.retries_left > 0:
                task.retries_left -= 1
                self.requeue(task)
            else:
                err = WorkerCrashedError(
                    f"the worker process running {task.name} died (exit code {code}) and its "
                    f"retries are spent; raise max_retries or find what kills it (memory? os._exit?)")
                self.finish_failed(task, serialization.dumps(err))
        w.inflight.clear()

    def actor_died_blob(self, actor: ActorRecord, why: str) -> bytes:
        return serialization.dumps(ActorDiedError(f"actor {actor.class_name}", why))


def kill_process(w: WorkerHandle) -> None:
    """SIGKILL ``w``'s process (its death then reaches the I/O thread as an EOF)."""
    try:
        w.proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass


class _Locked:
    __slots__ = ("s",)

    def __init__(self, scheduler: Scheduler):
        self.s = scheduler

    def __enter__(self) -> Scheduler:
        self.s.lock.acquire()
        return self.s

    def __exit__(self, *exc: object) -> None:
        s = self.s
        s.lock.release()
        if s.inbox:
            s.io.drain_if_free()
