"""The driver's I/O thread: reads every worker pipe and applies what arrives.

It sleeps in one ``multiprocessing.connection.wait`` over all pipes plus a
wake-up pipe, and handles each batch under the scheduler lock, then flushes
whatever the batch made ready. This is the only thread that reads pipes.

It is the scheduler's :class:`~sluice.executor.placement.WorkerIO`: made first
(the scheduler wakes it when a process starts), then started with the scheduler
it serves, which is all it needs (answers to lookups come from
:mod:`sluice.executor.lookups`).
"""

from __future__ import annotations

import os
import threading
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from sluice.executor import lookups
from sluice.executor.nesting import START_HOLD_S
from sluice.executor import protocol as P
from sluice.executor.records import ActorRecord, TaskRecord, WorkerHandle
from sluice.executor.strategies import group_demand, options_demand, placed_strategy
from sluice.store import serialization

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler


class IOThread:
    """Reads worker messages and applies them to a scheduler. See the module docstring."""

    s: Scheduler

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, name="sluice-io", daemon=True)
        self.conn_map: dict[Any, WorkerHandle] = {}

    def start(self, scheduler: Scheduler) -> None:
        """Read the pipes of ``scheduler``'s processes and apply what they send."""
        self.s = scheduler
        self.thread.start()

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already awake-pending, or closing

    def stop(self) -> None:
        self.stopping = True
        self.wake()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def refresh(self) -> None:
        s = self.s
        s.conns_changed = False
        self.conn_map = {w.conn: w for w in s.all_workers() if w.alive}

    def loop(self) -> None:
        s = self.s
        inbox = s.inbox
        while not self.stopping:
            if s.conns_changed:
                with s.lock:
                    self.refresh()
            hold = s.start_hold
            timeout = None if hold is None else max(0.0, hold + START_HOLD_S - time.monotonic())
            ready = wait([self.wake_r, *self.conn_map], timeout)
            if self.stopping:
                return
            if hold is not None and time.monotonic() >= hold + START_HOLD_S:
                with s.lock:  # a held process start is due (Scheduler.holds_start)
                    s.dispatch()
                    s.flush_all()
                    s.start_hold = None
            for c in ready:
                if c == self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except OSError:
                        pass
                    continue
                w = self.conn_map.get(c)
                if w is None or not w.alive:
                    continue
                try:
                    inbox.append((w, P.unpack(c.recv_bytes())))
                except (EOFError, OSError):
                    inbox.append((w, None))
                    self.conn_map.pop(c, None)  # never wait on a closed pipe again
            self.drain_if_free()

    def drain_if_free(self) -> None:
        """Apply queued worker batches unless another thread holds the lock.

        Whoever holds the lock calls this after releasing it, so a batch queued
        while the lock was busy is never left behind (flat combining: the thread
        already holding the lock does the work, with no hand-off per batch).
        """
        s = self.s
        while s.inbox and s.lock.acquire(blocking=False):
            try:
                self.drain_locked()
            finally:
                s.lock.release()

    def drain_locked(self) -> None:
        s = self.s
        inbox = s.inbox
        s.apply_ref_events()
        while inbox:
            w, batch = inbox.popleft()
            if not w.alive:
                continue
            if batch is None:
                self.on_death(w)
            else:
                self.handle(w, batch)
        s.apply_ref_events()
        s.dispatch()
        s.flush_all()
        if s.retired:
            s.reap_retired()

    def on_death(self, w: WorkerHandle) -> None:
        try:
            w.proc.wait(timeout=5)
        except Exception:
            pass
        try:
            w.conn.close()
        except OSError:
            pass
        if w.actor is not None:
            self.s.actor_manager.died(w)
        else:
            self.s.worker_died(w)

    def handle(self, w: WorkerHandle, batch: list) -> None:
        s = self.s
        for msg in batch:
            code = msg[0]
            if code == P.DONE:
                s.task_done(w, msg[1], msg[2], msg[3], msg[4])
            elif code == P.FAILED:
                s.task_failed(w, msg[1], msg[2], msg[3], msg[4], msg[5])
            elif code == P.INCREF:
                # A worker's put announces its ref before the value: the entry may be new.
                s.new_entry(msg[1], None).refs += 1
            elif code == P.DECREF:
                s.ref_events.append((-1, msg[1]))
            elif code == P.SUBMIT:
                self.nested_submit(msg, w)
            elif code == P.GET:
                s.worker_get(w, msg[1], msg[2], False, len(msg[2]), False, len(msg) > 3 and msg[3])
            elif code == P.WAIT:
                s.worker_get(w, msg[1], msg[2], True, msg[3], msg[4])
            elif code == P.PUT:
                s.add_object(msg[1], msg[2], msg[3], stored_by=w)
            elif code == P.BOUNCE:
                s.bounce(w, msg[1])
            elif code == P.ACTOR_READY:
                s.actor_manager.on_ready(w)
            elif code == P.ACTOR_FAILED:
                s.actor_manager.on_constructor_failed(w, msg[1])
            elif code == P.CREATE_ACTOR:
                self.nested_create_actor(msg, w)
            elif code == P.CALL_ACTOR:
                self.nested_actor_call(msg, w)
            elif code == P.LOOKUP:
                # Answered first: an answer may flush ``w`` (a placement group made ready),
                # which replaces ``w.out``.
                reply = lookups.answer(s, msg[2], msg[3], w)
                w.out.append((P.LOOKUP_REPLY, msg[1], reply))
                s.send(w)
            elif code == P.KILL:
                s.actor_manager.kill(msg[1], msg[2])
            elif code == P.CANCEL:
                s.cancel(msg[1], msg[2], len(msg) > 3 and msg[3])
            elif code == P.RELEASED:
                s.slots_released(w, msg[1])
            elif code == P.METRICS:
                s.metrics.apply(msg[1])
            elif code == P.GEN_ITEM:
                s.stream_item(w, msg[1], msg[2], msg[3], msg[4], msg[5])
            elif code == P.GEN_NEXT:
                s.stream_request(w, msg[1], msg[2], msg[3])
            elif code == P.GEN_TAKEN:
                s.stream_taken(msg[1], msg[2])
            elif code == P.GEN_CLOSE:
                s.close_stream(msg[1])
        s.apply_ref_events()

    def nested_submit(self, msg: tuple, w: WorkerHandle | None = None) -> None:
        _, fn_id, fn_bytes, blob, deps, contained, return_ids, options = msg
        s = self.s
        if fn_bytes is not None:
            s.functions.setdefault(fn_id, fn_bytes)
        key = options_demand(options, options.get("class_name") or "a task")
        strategy = options.get("scheduling_strategy")
        failed = None
        if strategy is None and w is not None and s.pgs.groups:  # a capturing group's child
            strategy = s.pgs.captured(w)
            if strategy is not None:
                try:
                    key = group_demand(key, strategy, f"task {options['name']}")
                except ValueError as err:
                    failed = err
        placed = placed_strategy(strategy)
        task = TaskRecord(next(s.task_ids), fn_id, options["name"], blob, deps, contained, return_ids,
                          key, options["max_retries"], options["retry_exceptions"], [], placed)
        if placed is not strategy:
            task.group = strategy
        if w is not None:
            task.job = s.job_of(w)
        task.from_task = w is not None and w.lease is not None and w.actor is None
        task.parent = options.get("_parent")  # (cancel(recursive=True) cancels it with its parent)
        task.max_calls = options.get("max_calls", 0)
        streaming = options["num_returns"] == "streaming"
        if streaming:  # before any refusal, so the generator raises its error
            s.open_stream(task, options.get("_generator_backpressure_num_objects"), w)
        if failed is not None:
            s.refuse(task, serialization.dumps(failed))
            return
        if strategy is not None or key not in s.feasible:
            try:
                s.check_task(key, strategy, f"task {options['name']}")
            except ValueError as err:  # infeasible or unschedulable: raised at get()
                s.refuse(task, serialization.dumps(err))
                return
        env, env_error = s.envs.for_options(options)
        if env_error is not None:
            s.refuse(task, serialization.dumps(env_error))
            return
        if env is not None:
            task.set_env(env)
        s.submit(task)
        if streaming:
            s.watch_stream_end(task)

    def nested_create_actor(self, msg: tuple, w: WorkerHandle) -> None:
        _, actor_id, cls_id, cls_bytes, blob, deps, contained, options = msg
        s = self.s
        if cls_bytes is not None:
            s.functions.setdefault(cls_id, cls_bytes)
        key = options_demand(options, options.get("class_name") or "a task")
        if options.get("scheduling_strategy") is None and s.pgs.groups:
            captured = s.pgs.captured(w)  # created by a task of a group that captures its children
            if captured is not None:
                options = {**options, "scheduling_strategy": captured}
                try:
                    key = group_demand(key, captured, f"actor {options['class_name']}")
                except ValueError:
                    options["scheduling_strategy"] = None  # too large for the group: placed as is
        actor = ActorRecord(actor_id, options["class_name"], cls_id, s.functions[cls_id], blob, deps,
                            contained, options, key, [])
        actor.job = s.job_of(w)
        try:
            actor.env, env_error = s.envs.for_options(options)
            if env_error is not None:
                raise env_error
            s.actor_manager.check_feasible(actor)
            s.actor_manager.create(actor)
        except Exception as err:  # refused before create() held its arguments: hold them as it
            s.actors[actor_id] = actor  # would, since mark_dead lets them go (they may be shared)
            s.hold(actor.deps)
            s.hold(actor.contained)
            s.actor_manager.mark_dead(actor, serialization.dumps(err))

    def nested_actor_call(self, msg: tuple, w: WorkerHandle) -> None:
        _, actor_id, method, blob, deps, contained, return_ids, options = msg
        stream = None
        if options["num_returns"] == "streaming":  # ``w`` iterates it (executor/generators.py)
            stream = (options.get("_generator_backpressure_num_objects"), w)
        self.s.actor_manager.call_method(actor_id, method, options["name"], blob, deps, contained,
                                         return_ids, [], stream)
