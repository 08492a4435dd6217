"""The worker-pool half of the scheduler: leases, pipelining and the pool's processes.

A mixin of :class:`~sluice.executor.scheduler.Scheduler`, sharing its state and lock
(as :class:`~sluice.executor.objects.ObjectTable` and the stream table do).

Worker leases (as in Ray): a pool worker that runs a task holds that task's resource
demand; more tasks of the same demand may be queued on it (pipelined) without taking
more resources, since one worker runs one task at a time. The lease ends when its queue
drains. How deep to pipeline follows how long the function took before: short tasks are
batched deeply, long ones one at a time. Workers are pooled per runtime environment; the
pool keeps about one running worker per CPU, starting and retiring processes to keep it so.
"""

from __future__ import annotations

from sluice.executor import nesting
from sluice.executor import protocol as P
from sluice.executor.nesting import PIPELINE_BYTES
from sluice.executor.placement import Node
from sluice.executor.records import TaskRecord, WorkerHandle
from sluice.executor.resources import NodeResources, ResourceKey
from sluice.executor.runtime_env import PreparedEnv

TARGET_BATCH_SECONDS = 0.002
"""Pipeline depth aims to keep about this much work queued on a leased worker."""
MAX_PIPELINE = 256


class WorkerPool:
    """Picking, leasing, starting and retiring pool workers (see the module docstring)."""

    __slots__ = ()  # the state is the scheduler's (``workers``, ``durations``, ``placement``, ...)

    def pipeline_depth(self, fn_id: int) -> int:
        seconds = self.durations.get(fn_id)
        if seconds is None:
            return 1
        return max(1, min(MAX_PIPELINE, int(TARGET_BATCH_SECONDS / max(seconds, 1e-7))))

    def pick_worker(self, key: ResourceKey, fn_id: int, node: Node, follow: bool = True,
                    env: PreparedEnv | None = None) -> WorkerHandle | None:
        """A worker on ``node`` started with runtime environment ``env`` to run a task of
        demand ``key`` now, or None. ``follow``: the task may be queued behind the one a busy
        worker runs."""
        best = None
        env_id = env.env_id if env is not None else None
        for w in self.workers:  # an idle worker already leased for this demand
            if w.node is node and w.lease == key and w.env_id == env_id and not w.blocked \
                    and w.alive and not w.used_up:
                if not w.inflight:
                    return w
                if not follow or (self.blocking_fns and nesting.may_block(self, w)):
                    continue  # a task queued behind it would come back when it blocks
                if best is None or len(w.inflight) < len(best.inflight):
                    best = w
        resources = self.placement.node_resources(node)
        gpus = resources.try_acquire(key)
        if gpus is not None:
            w = self.idle_worker(key, node, not follow, env)
            if w is not None:
                w.lease, w.gpu_ids = key, gpus
                return w
            resources.release(key, gpus)
        if best is not None and self.has_room(best, fn_id):
            return best
        return None

    def may_follow(self, w: WorkerHandle, task: TaskRecord) -> bool:
        """Whether ``task`` may queue on ``w`` behind the producer of its inputs.

        A task extending a chain (its producer is the last task queued there) can
        run nowhere sooner, so only the byte bound applies; other dependents (a
        fan-out) may run in parallel elsewhere, so the pipeline depth applies too.
        """
        if w.queued_bytes >= PIPELINE_BYTES or w.used_up:
            return False
        last = next(reversed(w.inflight.values()), None)
        if last is not None and any(oid in task.deps for oid in last.return_ids):
            return True
        return self.has_room(w, task.fn_id)

    def has_room(self, w: WorkerHandle, fn_id: int) -> bool:
        """Whether one more task may queue on busy worker ``w``.

        Bounded in count (by the function's measured duration) and in bytes, so the
        driver never blocks writing to a worker's full pipe.
        """
        return len(w.inflight) < self.pipeline_depth(fn_id) and w.queued_bytes < PIPELINE_BYTES

    def idle_worker(self, key: ResourceKey, node: Node, hold: bool = False,
                    env: PreparedEnv | None = None) -> WorkerHandle | None:
        """An unleased worker on ``node`` of runtime environment ``env``, or a new one while
        fewer than its CPUs run tasks (``hold``: not before the start hold has passed, see
        nesting.holds_start)."""
        running = 0
        env_id = env.env_id if env is not None else None
        other = None  # an idle worker of another environment
        for w in self.workers:
            if w.node is not node:
                continue
            if w.lease is None and w.alive and not w.used_up:
                if w.env_id == env_id:
                    return w
                if not w.inflight and not w.out and not w.blocked:
                    other = w
            elif not w.lent:
                running += 1
        cap = max(1, int(self.placement.node_resources(node).total.get("CPU", 1)))
        if dict(key).get("CPU", 0) == 0:
            cap += 4
        if running < cap and not (hold and nesting.holds_start(self)):
            if other is not None:  # workers are pooled per environment: trade an idle one in
                self.retire(other)
            return self.start_worker(node, env)
        return None

    def start_worker(self, node: Node, env: PreparedEnv | None = None) -> WorkerHandle:
        """Start a pool worker on ``node`` with runtime environment ``env`` (None: none)."""
        index = next(self.worker_index)
        # (a placement that knows no environments is asked as before)
        proc, conn = self.placement.spawn(index, node) if env is None else \
            self.placement.spawn(index, node, env)
        w = WorkerHandle(index, proc, conn)
        w.node = node
        self.note_worker(w)
        w.env_id = env.env_id if env is not None else None
        self.workers.append(w)
        self.conns_changed = True
        self.io.wake()
        return w

    def res_of(self, w: WorkerHandle) -> NodeResources:
        """The resources of the node ``w`` runs on."""
        return self.placement.node_resources(w.node)

    def release_lease(self, w: WorkerHandle) -> None:
        actors = self.actor_manager
        if w.actor is not None:
            if not w.inflight and w.actor.actor_id in actors.retiring:
                actors.retire_if_idle(w.actor)
            return
        if w.blocked:
            nesting.settle(self, w)
        elif not w.inflight and w.lease is not None:
            self.res_of(w).release(w.lease, w.gpu_ids)
            w.lease, w.gpu_ids = None, []
            if actors.waiting_for_resources or self.pgs.pending:
                actors.retry_waiting()
            if w.used_up:  # its function's max_calls are done: it exits, as in Ray
                self.retire(w)
            else:
                self.retire_if_extra(w)

    def count_call(self, w: WorkerHandle, task: TaskRecord) -> None:
        """``task``, of a function with max_calls, was sent to ``w``: count it, and once ``w``
        reaches the limit send it no more tasks (it exits when its last one ends)."""
        calls = w.calls if w.calls is not None else {}
        w.calls = calls
        calls[task.fn_id] = calls.get(task.fn_id, 0) + 1
        if calls[task.fn_id] >= task.max_calls:
            w.used_up = True

    def retire_if_extra(self, w: WorkerHandle) -> None:
        """Stop an idle worker the pool no longer needs.

        Workers blocked in nested gets are replaced while they wait; once they run
        again the pool holds more than one worker per CPU, and the extra idle ones go.
        """
        cap = max(1, int(self.res_of(w).total.get("CPU", 1)))
        unblocked = sum(1 for x in self.workers if x.node is w.node and x.alive and not x.lent)
        if unblocked <= cap or w.inflight or w.blocked or w.out:
            return
        self.retire(w)

    def retire(self, w: WorkerHandle) -> None:
        """Stop idle pool worker ``w``."""
        w.out.append((P.SHUTDOWN,))
        self.send(w)
        self.workers.remove(w)
        w.alive = False
        self.conns_changed = True
        self.retired.append(w)

    def reap_retired(self) -> None:
        """Collect the exit status of retired workers (no zombies)."""
        self.retired = [w for w in self.retired if w.proc.poll() is None]
