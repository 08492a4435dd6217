"""Nested gets: a task waiting for tasks it submitted runs them itself, in its own worker.

A task that calls ``get`` inside a pool worker waits for results. Ray releases the
waiting worker's CPUs and lets another worker (a new process if none is idle) run the
tasks it waits for. Here the waiting worker runs them: when one of the tasks its get
waits for has not started (it sits in a ready queue), the scheduler takes it out and
sends it to the waiting worker as a NESTED message, and the worker runs it inside the
get (its main thread is blocked there anyway), reports its result like any other task,
and goes back to waiting. A recursive program (``fib``) thus runs on as many processes
as it has CPUs, not one process per task waiting in a get.

Resources: the nested task runs on the waiting task's lease (same demand, same GPUs),
so nothing more is taken. While the worker waits with nothing to run, its CPUs are
lent to the pool (as Ray does; ``lent``); it takes them back when its get returns or it
runs a task that get waits for, even if that oversubscribes (as Ray does when a get
returns): the get it waits in can only return after that task, so the worker must not
idle while the task waits for a CPU.

What is fed, and when (so that no deadlock is made and no get returns later for it):
only a task that the worker's innermost get waits for: one it names, or one that a task
it names, running in another worker, waits for (see :func:`take_needed`); only when that
get may nest (a get without a timeout, from the main thread of a pool worker; never an
actor); only with the lease's exact demand and a placement that allows the worker's
node; and at most ``MAX_DEPTH`` gets deep (past it the worker waits as Ray's does, and
another worker runs the task). One task at a time, and behind it a few more while they
are short and never get (:func:`top_up`, as the scheduler pipelines): a queued one that
the running one turns out to wait for goes back (the worker hands back its queued nested
tasks whenever it enters a get, and any that arrive for a get that is not its innermost).

The worker's main thread is a stack: task, get, nested tasks, get, ... The driver keeps
it as two lists on the :class:`~sluice.executor.records.WorkerHandle`: ``nest_waits``
(the gets that may nest, innermost last) and ``nested`` (per get, the ids of the tasks
sent to run inside it; the first runs, the others wait behind it), so ``nest_waits[i]``
is the get that runs ``nested[i]``. The worker waits with nothing to run while ``blocked
> len(nested)``; it can be fed while ``len(nest_waits) > len(nested)``.

How the scheduler helps (scheduler.py): a function whose tasks get is never queued behind
(they would come back when it waits), a task submitted by a task never queues behind a busy
worker (the waiting submitter may run it), and a new process for such a task is held back
a few milliseconds while a worker waits in a get and may take it (``holds_start``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from sluice.executor.records import PENDING, TaskRecord, WorkerHandle, WorkerRequest

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler

PIPELINE_BYTES = 128 * 1024
"""At most this many argument bytes queue on a busy worker (the worker pool's bound too; its
socket buffer holds ~200 KB, so the driver never blocks writing to it)."""

START_HOLD_S = 0.005
"""A task submitted by a task waits this long for a worker waiting in a nested get to take
it (its submitter's get usually follows within a millisecond) before a process starts for it."""

MAX_DEPTH = 32
"""Gets stacked in one worker's main thread at most that still run nested tasks (each
level costs ~10 Python frames)."""


def settle(s: Scheduler, w: WorkerHandle) -> None:
    """After ``w``'s gets or nested tasks changed: feed it tasks its get waits for, or lend
    its CPUs while it waits with nothing to run, or take them back once it runs again."""
    if w.actor is not None or w.lease is None or not w.alive:
        return
    depth = len(w.nested)
    waiting = w.blocked > depth
    if waiting and len(w.nest_waits) > depth and depth < MAX_DEPTH:
        task = take_needed(s, w, 0)
        if task is not None:
            if w.lent:  # as when its get returns: taken back even if that oversubscribes
                s.res_of(w).force_acquire(w.lease)
                w.lent = False
            w.nested.append([task.task_id])
            s.send_task(task, w, nested=True)
            top_up(s, w)
            s.send(w)
            return
    if waiting and not w.lent:
        # Tasks queued here unstarted come back (BOUNCE) to be run here nested or elsewhere:
        # lending before they do would start another worker for them.
        if len(w.inflight) - sum(map(len, w.nested)) <= 1:
            s.res_of(w).lend(w.lease)
            w.lent = True
    elif not waiting and w.lent:
        s.res_of(w).force_acquire(w.lease)
        w.lent = False
    elif not waiting and depth and len(w.nest_waits) == depth and top_up(s, w):
        s.send(w)  # running nested tasks: a few more queued behind them
    # (A get answered before its nested task ended, as when that task is cancelled, leaves
    # len(nest_waits) < len(nested) until the task ends: nothing is fed meanwhile.)


def top_up(s: Scheduler, w: WorkerHandle) -> bool:
    """Queue more tasks in ``w``'s innermost get, behind the nested task running there, while
    they are short (the pipeline depth of their function) and never wait in a get
    themselves (one that does would hold the others back). True if any was queued."""
    level = w.nested[-1]
    running = s.tasks.get(level[0])
    if running is not None and running.fn_id in s.blocking_fns:
        return False
    queued = False
    while w.queued_bytes < PIPELINE_BYTES:
        task = take_needed(s, w, len(level))
        if task is None:
            return queued
        level.append(task.task_id)
        s.send_task(task, w, nested=True)
        queued = True
    return queued


def forget(w: WorkerHandle, task_id: int) -> None:
    """``task_id`` finished (or came back) from ``w``: drop it from its get's level."""
    for i, level in enumerate(w.nested):
        if task_id in level:
            level.remove(task_id)
            if not level:
                del w.nested[i]
            return


def take_needed(s: Scheduler, w: WorkerHandle, queued: int) -> TaskRecord | None:
    """A queued task that ``w``'s innermost get waits for, taken out of its ready queue;
    ``queued``: how many already wait behind the running one there (see :func:`top_up`).

    First the tasks the get names; then, for those running in other workers, the tasks
    their gets wait for (a running task finishes only after every get above it in its
    worker returns), shallowest first, as work stealing takes the biggest piece. Running
    any of them here cannot deadlock: the get below waits for it either way.
    """
    seen = {w}
    requests = deque([w.nest_waits[len(w.nested) - 1 if queued else -1]])
    while requests:
        req = requests.popleft()
        for oid in req.ids:
            entry = s.objects.get(oid)
            if entry is None or entry.state != PENDING or entry.producer is None:
                continue
            task = entry.producer
            other = task.worker
            if other is None:
                if may_nest(s, w, task) and (not queued or (
                        task.fn_id not in s.blocking_fns and queued < s.pipeline_depth(task.fn_id))) \
                        and take_from_queue(s, task):
                    return task
            elif other not in seen and other.actor is None and other.alive:
                seen.add(other)
                requests.extend(gets_above(other, task))
    return None


def gets_above(w: WorkerHandle, task: TaskRecord) -> list[WorkerRequest]:
    """The gets ``task``, running in ``w``, waits for before it finishes (innermost last)."""
    for i, level in enumerate(w.nested):  # nest_waits[i] made the get whose tasks are nested[i]
        if level[0] == task.task_id:  # the first of a level runs; the others wait behind it
            return w.nest_waits[i + 1:]
    if next(iter(w.inflight), None) == task.task_id:  # the task at the bottom of w's stack
        return w.nest_waits
    return []  # queued there unstarted


def take_from_queue(s: Scheduler, task: TaskRecord) -> bool:
    """Take ``task`` out of its ready queue; False if it is not there (sent, or waiting)."""
    queue = s.ready.get(task.lane)
    if not queue:
        return False
    try:
        queue.remove(task)
    except ValueError:
        return False
    return True


def may_nest(s: Scheduler, w: WorkerHandle, task: TaskRecord) -> bool:
    """Whether ``task`` is unstarted, ready, and fits ``w``'s lease, node and runtime environment."""
    return (task.worker is None and task.local_to is None and task.unresolved == 0
            and task.actor is None and task.chain is None and not task.cancelled
            and not w.used_up
            and task.key == w.lease
            and w.env_id == (task.env.env_id if task.env is not None else None)
            and (task.strategy is None or s.placement.may_run_on(task, w.node)))


def may_block(s: Scheduler, w: WorkerHandle) -> bool:
    """Whether the task ``w`` runs now is of a function that has waited in a get before
    (the scheduler queues nothing behind it: that would come back when it waits)."""
    running = next(iter(w.inflight.values()), None)
    return running is not None and running.fn_id in s.blocking_fns


def holds_start(s: Scheduler) -> bool:
    """Whether to hold a new process back for START_HOLD_S, while a worker waits in a
    nested get and may take the task itself. The I/O thread dispatches again when the
    hold ends (io.py), so nothing waits longer than that for its process."""
    if not any(w.lent and len(w.nest_waits) > len(w.nested) for w in s.workers):
        return False
    now = time.monotonic()
    if s.start_hold is None:
        s.start_hold = now
        s.io.wake()  # its next wait ends with the hold
    return now - s.start_hold < START_HOLD_S


def offer(s: Scheduler, task: TaskRecord) -> None:
    """``task`` just became ready: a worker whose get waits for it may run it, directly
    (its get names it) or else a worker lent out while it waits (through other workers)."""
    for oid in task.return_ids:
        for req in s.requests.get(oid, ()):
            w = req.worker
            if w.nest_waits and w.nest_waits[-1] is req:
                settle(s, w)
                if task.worker is not None:
                    return
    for w in s.workers:
        if w.lent and len(w.nest_waits) > len(w.nested):
            settle(s, w)
            if task.worker is not None:
                return
