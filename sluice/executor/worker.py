"""The worker process: runs tasks, or hosts one actor, for the driver.

Forked by the worker template (:mod:`sluice.executor.template`), or started as
``python -m sluice.executor.worker FD SESSION INDEX PARENT``; FD is its end of a
socket pair to the driver, whose end of file ends the process. The main thread
owns the pipe: it reads batches of messages, runs tasks in order and writes
results back in batches. Threads of a threaded or async actor hand results to
:meth:`Worker.emit` and flush.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import traceback
from collections import OrderedDict, deque
from multiprocessing.connection import Connection
from typing import Any

from sluice.exceptions import (
    ActorDiedError,
    AsyncioActorExit,
    GetTimeoutError,
    InternalError,
    SerializationError,
    TaskCancelledError,
    TaskError,
)
from sluice.executor import context, logs
from sluice.executor import protocol as P
from sluice.executor.calls import decode_call, load_function, split_returns
from sluice.executor.chains import ChainLink, run_link
from sluice.executor.lifeline import die_with_parent, exit_on_hangup
from sluice.executor.runtime_env import builds_venv_on_node
from sluice.executor.streaming import WorkerStreams
from sluice.executor.worker_api import CANCELLED_CALLS, CURRENT_TASK, WorkerAPI
from sluice.store import serialization, shm

RING_SIZE = 1024
"""How many recent small results a worker keeps to feed pipelined dependents."""

FLUSH_INTERVAL = 0.001
"""Results are batched, but never held back longer than this while tasks keep running."""

POLL_INTERVAL = 0.0005
"""A worker with queued work checks its pipes for new messages this often."""


class ActorExit(SystemExit):
    """Raised by :func:`sluice.actor.exit_actor` in a sync actor's call (a SystemExit, as Ray's,
    so a method's ``except Exception`` lets it through); the worker ends the actor."""


EXIT_ERRORS = (ActorExit, AsyncioActorExit)
"""What a call that asked its actor to exit raises (an async actor's: AsyncioActorExit)."""

TERMINATE = "__ray_terminate__"
"""Ray's method every actor has: ``handle.__ray_terminate__.remote()`` ends the actor after
the calls queued before it, as if its own method called exit_actor."""


class DependencyFailed(Exception):
    """A dependency of the task is an error; the task fails with that same error."""

    def __init__(self, blob: bytes):
        self.blob = blob


class Worker(WorkerAPI):
    """One worker process's state. See the module docstring."""

    exit_errors = EXIT_ERRORS  # (for executor/chains.py, which worker.py imports)

    def __init__(self, conn: Connection, session: str, index: int):
        super().__init__(conn, session, index)
        self.functions: dict[int, Any] = {}
        self.function_sources: dict[int, bytes] = {}  # received, not yet unpickled
        self.local: deque = deque()            # tasks received and not yet started
        self.nested: dict[int, deque] = {}     # get depth -> tasks to run inside that get
        self.ring: OrderedDict[int, tuple] = OrderedDict()  # object id -> result spec
        self.blocked = 0                       # depth of nested get/wait in the main thread
        self.actor: Any = None
        self.actor_name: str | None = None     # the class name of the actor hosted here, if any
        self.actor_error: bytes | None = None
        self.exiting = False                   # exit_actor was called: run atexit, then exit
        self.actor_pool: Any = None            # ThreadPoolExecutor for max_concurrency > 1
        self.pool_calls: dict[int, tuple[Any, str]] = {}  # its calls: task id -> (future, name)
        self.actor_loop: Any = None            # asyncio loop thread for async methods
        self.last_flush = time.perf_counter()
        self.last_poll = 0.0
        self.held_slots: set[str] = set()      # slots to recycle once our views of them die
        self.link: ChainLink | None = None     # chain socket and table, from the first CHAIN_SETUP
        self.streams = WorkerStreams(self)     # streaming calls running here (executor/streaming.py)

    # -- the main loop ---------------------------------------------------------------
    def run(self) -> None:
        """Serve the driver until it says SHUTDOWN or the pipe closes."""
        while True:
            if not self.local:
                self.flush()
                if self.link is not None and self.link.wait(self.local):
                    self.last_poll = time.perf_counter()  # both pipes were just polled
                    continue  # a chain hop arrived from another actor
                try:
                    batch = P.unpack(self.conn.recv_bytes())
                except (EOFError, OSError):
                    return
                if self.handle_batch(batch):
                    return
                continue
            # With work queued, look for new messages at most every POLL_INTERVAL:
            # a busy worker stays responsive without a system call per task.
            now = time.perf_counter()
            if now - self.last_poll > POLL_INTERVAL:
                self.last_poll = now
                if self.link is not None:
                    self.link.take(self.local)
                if self.conn.poll():
                    try:
                        if self.handle_batch(P.unpack(self.conn.recv_bytes())):
                            return
                    except (EOFError, OSError):
                        return
                if not self.local:  # a cancel just took the last queued task
                    continue
            msg = self.local.popleft()
            code = msg[0]
            if code == P.TASK:
                self.run_task(msg)
            elif code == P.CHAIN_RELAY or code == P.CHAIN:
                run_link(self, msg)
            else:
                self.run_actor_call(msg)
            if self.held_slots:
                self.check_held_slots()
            if not self.local or time.perf_counter() - self.last_flush > FLUSH_INTERVAL:
                self.flush()

    def set_up_chain(self, msg: tuple) -> None:
        """Learn a chain (opening this process's chain socket at the first) and say so."""
        _, chain_id, hops, directory, driver = msg
        if self.link is None:
            try:
                self.link = ChainLink(directory, self.index, self.conn.fileno(), driver)
            except OSError:
                return  # never acknowledged: the driver makes ordinary calls instead
        self.link.table.set(chain_id, hops)
        self.link.acknowledge(chain_id, self.index, self.local)

    def handle_batch(self, batch: list) -> bool:
        """Apply one batch from the driver; True when told to shut down."""
        for msg in batch:
            code = msg[0]
            if code == P.TASK or code == P.ACTOR_CALL or code == P.CHAIN or code == P.NESTED:
                if code == P.NESTED:
                    depth, msg = msg[1], msg[2]
                if (code == P.TASK or code == P.NESTED) and msg[3] is not None:
                    # Keep the function even if this task is handed back or dropped: the
                    # driver now counts it as known here and will not send it again.
                    self.function_sources.setdefault(msg[2], msg[3])
                if code == P.NESTED:  # a task the get at ``depth`` waits for: run it inside
                    if self.blocked == depth:
                        self.nested.setdefault(depth, deque()).append(msg)
                    else:  # that get returned, or waits under a deeper one that may need it
                        self.emit((P.BOUNCE, [msg[1]]))
                elif self.blocked and code == P.TASK:
                    self.emit((P.BOUNCE, [msg[1]]))
                elif code == P.ACTOR_CALL and (self.actor_pool or self.actor_loop):
                    self.start_concurrent_call(msg)
                else:
                    self.local.append(msg)
            elif code in (P.GET_REPLY, P.WAIT_REPLY, P.LOOKUP_REPLY):
                self.deliver_reply(msg[1], msg[2])
            elif code == P.RELEASE:
                for name in msg[1]:
                    self.reader.drop(name)
            elif code == P.CANCEL_TASK:
                self.cancel_here(msg[1])
            elif code == P.GEN_ACK:
                self.streams.on_ack(msg[1], msg[2])
            elif code == P.RECYCLE:
                self.held_slots.update(msg[1])
                self.check_held_slots()
            elif code == P.RELINQUISH:
                bounced = [m[1] for m in self.local if m[0] == P.TASK]
                if bounced:
                    self.local = deque(m for m in self.local if m[0] != P.TASK)
                    self.emit((P.BOUNCE, bounced))
            elif code == P.ACTOR_CREATE:
                self.host_actor(msg)
            elif code == P.CHAIN_SETUP:
                self.set_up_chain(msg)
            elif code == P.CHAIN_FORGET and self.link is not None:
                self.link.table.forget(msg[1])
            elif code == P.SHUTDOWN:
                return True
        return False

    def cancel_here(self, task_id: int) -> None:
        """The driver cancelled a task or actor call sent here: dropped if it has not started (and said so), a
        running generator stops at its next item, an async actor's call is cancelled on the
        loop; a sync or threaded actor's running call is only flagged (``is_canceled``)."""
        if self.drop_unstarted(task_id):
            return
        self.streams.on_cancel(task_id)
        pool_call = self.pool_calls.get(task_id)
        if pool_call is not None and pool_call[0].cancel():  # not started in its thread yet
            self.pool_calls.pop(task_id, None)
            self.cancelled_call(task_id, pool_call[1])
        elif self.actor_loop is None or not self.actor_loop.cancel(task_id):
            if self.actor is not None:
                CANCELLED_CALLS.add(task_id)

    def drop_unstarted(self, task_id: int) -> bool:
        """Drop a cancelled task or actor call that has not started (and say so)."""
        for queue in (self.local, *self.nested.values()):
            for m in queue:
                if m[1] == task_id and m[0] in (P.TASK, P.ACTOR_CALL):
                    queue.remove(m)
                    if m[0] == P.TASK:  # (the driver failed it already)
                        self.emit((P.FAILED, task_id, b"", False, 0.0, time.time()))
                    else:
                        self.cancelled_call(task_id, m[6])
                    return True
        return False

    def cancelled_call(self, task_id: int, name: str) -> None:
        """Fail actor call ``task_id``, cancelled before it ended, with TaskCancelledError."""
        self.emit((P.FAILED, task_id, serialization.dumps(
            TaskCancelledError(f"actor method {name} was cancelled")), False, 0.0, time.time()))
        self.flush()

    def check_held_slots(self) -> None:
        """Tell the driver which slots no value of ours still views (it may reuse them)."""
        done = [name for name in self.held_slots if not self.reader.has_views(name)]
        if done:
            self.held_slots.difference_update(done)
            self.emit((P.RELEASED, done))

    # -- tasks -----------------------------------------------------------------------
    def function(self, fn_id: int, fn_bytes: bytes | None) -> Any:
        fn = self.functions.get(fn_id)
        if fn is None:
            data = fn_bytes or self.function_sources.pop(fn_id, None)
            if data is None:
                raise InternalError(f"function {fn_id:x} was never sent to worker {self.index}")
            fn = self.functions[fn_id] = load_function(data)
        return fn

    def run_task(self, msg: tuple) -> None:
        _, task_id, fn_id, fn_bytes, args_blob, deps, return_ids, retry_exc, gpu_ids, name, stream = msg
        start = time.time()
        try:
            if self.env_setup is not None:  # a cluster's runtime_env: before the function loads
                self.apply_env_setup()
            fn = self.function(fn_id, fn_bytes)
            args, kwargs = decode_call(args_blob, self.resolve_deps(deps))
            if gpu_ids is not None:
                set_visible_gpus(gpu_ids)
            outer = CURRENT_TASK.set(task_id)  # a task run nested inside a get sets it back
            outer_name, logs.current.name = logs.current.name, name  # who prints, in its logs
            try:
                value = fn(*args, **kwargs)
                if stream is not None:
                    value = self.streams.run(task_id, value, stream, True)
            finally:
                CURRENT_TASK.reset(outer)
                logs.current.name = outer_name
            results = self.encode_results(name, value, return_ids)
        except DependencyFailed as dep:
            self.record_failure(task_id, return_ids, dep.blob, False, start)
        except Exception as err:
            blob = error_blob(name, err)
            self.record_failure(task_id, return_ids, blob, retryable(err, retry_exc), start)
        else:
            self.emit((P.DONE, task_id, results, time.time() - start, start))

    def record_failure(self, task_id, return_ids, blob, can_retry, start) -> None:
        if not can_retry:
            for oid in return_ids:
                self.remember(oid, (P.DEP_ERROR, blob))
        self.emit((P.FAILED, task_id, blob, can_retry, time.time() - start, start))

    def encode_results(self, name: str, value: Any, return_ids: list[int]) -> list:
        values = split_returns(name, value, len(return_ids))
        results = []
        for oid, v in zip(return_ids, values):
            spec, contained = self.store_value(oid, v)
            self.remember(oid, spec)
            results.append((oid, spec, contained))
        return results

    def store_value(self, oid: int, value: Any) -> tuple[tuple, tuple]:
        """Serialize a result: inline when small, else into a shm segment."""
        sobj = serialization.serialize(value)
        if sobj.nbytes <= P.INLINE_MAX:
            return (P.DEP_INLINE, serialization.to_bytes(sobj)), sobj.contained_ids
        size = shm.write_segment(shm.segment_name(self.session, oid), sobj)
        return (P.DEP_SHM, size), sobj.contained_ids

    def remember(self, oid: int, spec: tuple) -> None:
        if spec[0] == P.DEP_SHM:
            spec = (P.DEP_SHM, shm.segment_name(self.session, oid))
        self.ring[oid] = spec
        if len(self.ring) > RING_SIZE:
            self.ring.popitem(last=False)

    def resolve_deps(self, deps: list) -> list:
        values = []
        for spec in deps:
            values.append(self.value_of(spec))
        return values

    def value_of(self, spec: tuple, object_id: int | None = None) -> Any:
        kind, payload = spec
        if kind == P.DEP_INLINE:
            return serialization.loads(payload)
        if kind == P.DEP_SHM:
            return self.read_segment(payload)
        if kind == P.DEP_SHM_ONCE:  # a chained value: ours alone once mapped
            value = self.reader.read(payload)
            self.reader.drop(payload)
            shm.unlink_segment(payload)
            return value
        if kind == P.DEP_REMOTE:
            return self.read_remote(payload)
        if kind == P.DEP_LOCAL:
            local = self.ring.get(payload)
            if local is None:  # evicted from the ring: ask the driver like any get
                local = self.request_objects([payload], None)[0]
            return self.value_of(local, payload)
        raise DependencyFailed(payload)

    # -- actors ----------------------------------------------------------------------
    def host_actor(self, msg: tuple) -> None:
        _, cls_bytes, args_blob, deps, max_concurrency, name, gpu_ids = msg
        self.actor_name = name
        logs.current.name = name  # an actor's output is its class's, as in Ray
        try:
            if self.env_setup is not None:
                self.apply_env_setup()
            if gpu_ids is not None:
                set_visible_gpus(gpu_ids)
            cls = load_function(cls_bytes)
            args, kwargs = decode_call(args_blob, self.resolve_deps(deps))
            self.actor = cls(*args, **kwargs)
            self.setup_actor_concurrency(cls, max_concurrency)
        except DependencyFailed as dep:
            self.actor_error = dep.blob
        except EXIT_ERRORS:
            self.exiting = True
            self.actor_error = exit_blob(f"{name}.__init__")
        except Exception as err:
            self.actor_error = error_blob(f"{name}.__init__", err, ActorDiedError)
        if self.actor_error is None:
            self.emit((P.ACTOR_READY,))
        else:
            self.emit((P.ACTOR_FAILED, self.actor_error))
        self.flush()

    def setup_actor_concurrency(self, cls: type, max_concurrency: int | None) -> None:
        import inspect

        is_async = any(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
                       for _, m in inspect.getmembers(cls, inspect.isfunction))
        if is_async:
            from sluice.executor.actor_loop import ActorLoop

            self.actor_loop = ActorLoop(self, max_concurrency or 1000)
        elif max_concurrency and max_concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.actor_pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="sluice-actor")

    def start_concurrent_call(self, msg: tuple) -> None:
        if self.actor_loop is not None:
            self.actor_loop.submit(msg)
        else:
            task_id = msg[1]
            future = self.actor_pool.submit(self.run_actor_call, msg, True)
            self.pool_calls[task_id] = (future, msg[6])
            future.add_done_callback(lambda _: self.pool_calls.pop(task_id, None))

    def run_actor_call(self, msg: tuple, flush_now: bool = False) -> None:
        _, task_id, method, args_blob, deps, return_ids, name, stream = msg
        start = time.time()
        if self.actor_error is not None:
            self.emit((P.FAILED, task_id, self.actor_error, False, 0.0, start))
        else:
            try:
                args, kwargs = decode_call(args_blob, self.resolve_deps(deps))
                outer = CURRENT_TASK.set(task_id)
                try:
                    value = self.call_method(method, args, kwargs)
                    if stream is not None:
                        value = self.streams.run(task_id, value, stream, not flush_now)
                finally:
                    CURRENT_TASK.reset(outer)
            except EXIT_ERRORS:
                self.exit_call(task_id, name, start)
            except Exception as err:
                self.fail_call(task_id, name, err, start)
            else:
                self.complete_call(task_id, name, value, return_ids, start)
            if CANCELLED_CALLS:
                CANCELLED_CALLS.discard(task_id)
        if flush_now:
            self.flush()

    def call_method(self, method: str, args: list, kwargs: dict) -> Any:
        """Call the actor's ``method`` here; an async method runs to its end on the actor's loop."""
        value = self.bound_method(method)(*args, **kwargs)
        if self.actor_loop is not None and inspect.isawaitable(value):
            value = self.actor_loop.result_of(value)
        return value

    def bound_method(self, method: str) -> Any:
        """The actor's ``method``; ``__ray_terminate__``, unless the class has its own, exits."""
        if method == TERMINATE and not hasattr(self.actor, TERMINATE):
            return self.exit_actor
        return getattr(self.actor, method)

    def exit_actor(self) -> None:
        """End the actor this worker hosts from inside one of its calls (raises; see
        :func:`sluice.actor.exit_actor`): the call's ``get`` and every call after it raise
        ActorDiedError, and the process exits once the driver has seen the exit."""
        if self.actor_name is None:
            raise TypeError("exit_actor() was called in a task, not an actor; it ends the actor "
                            "whose method calls it (to stop a task, return from it)")
        if self.actor_loop is not None and self.actor_loop.on_loop():
            raise AsyncioActorExit()  # a SystemExit would stop only the loop's thread
        raise ActorExit(0)

    def exit_call(self, task_id: int, name: str, start: float) -> None:
        """The call ``task_id`` asked its actor to exit: fail it, fail every call after it (the
        actor's error), and tell the driver, which marks the actor dead (no restart) and
        stops this process."""
        blob = exit_blob(name)
        first = not self.exiting
        if first:
            self.exiting = True
            self.actor_error = blob
        self.emit((P.FAILED, task_id, blob, False, time.time() - start, start))
        if first:
            self.emit((P.ACTOR_FAILED, blob))
        self.flush()

    def complete_call(self, task_id: int, name: str, value: Any, return_ids: list[int],
                      start: float) -> None:
        """Report an actor call's value (or the error storing it raised)."""
        try:
            results = self.encode_results(name, value, return_ids)
        except Exception as err:
            self.fail_call(task_id, name, err, start)
        else:
            self.emit((P.DONE, task_id, results, time.time() - start, start))

    def fail_call(self, task_id: int, name: str, err: Exception, start: float) -> None:
        """Report an actor call's error: a failed input's own error, or the call's."""
        blob = err.blob if isinstance(err, DependencyFailed) else error_blob(name, err)
        self.emit((P.FAILED, task_id, blob, False, time.time() - start, start))

    # -- blocking requests from task code --------------------------------------------
    def may_nest(self, timeout: float | None) -> bool:
        """A get without a timeout in the main thread of a task (not an actor) may run the
        tasks it waits for (executor/nesting.py); one with a timeout only waits, so it
        returns or raises in time."""
        return timeout is None and self.actor is None and self.on_main_thread()

    def on_block(self) -> None:
        self.blocked += 1
        if self.nested:  # queued behind the task that now waits: it may wait for them
            stuck = [m[1] for queue in self.nested.values() for m in queue]
            self.nested.clear()
            if stuck:
                self.emit((P.BOUNCE, stuck))

    def on_unblock(self) -> None:
        left = self.nested.pop(self.blocked, None)
        self.blocked -= 1
        if left:  # sent for the get that just returned: back to the driver
            self.emit((P.BOUNCE, [m[1] for m in left]))

    def pump(self, timeout: float | None) -> None:
        """Run a task the current get waits for, if the driver sent one; else read and
        apply one batch from the pipe (main thread, inside a nested wait)."""
        queue = self.nested.get(self.blocked)
        if queue:
            self.run_task(queue.popleft())
            self.flush()
            return
        if self.conn.poll(timeout):
            if self.handle_batch(P.unpack(self.conn.recv_bytes())):
                os._exit(0)
            self.flush()
        elif timeout is not None:
            raise GetTimeoutError("timed out")

    def emit(self, msg: tuple) -> None:
        if self.streams.flusher is not None:  # the stream flusher may swap the outbox meanwhile
            with self.send_lock:
                self.outbox.append(msg)
        else:
            self.outbox.append(msg)

    def flush(self) -> None:
        super().flush()
        self.last_flush = time.perf_counter()


def set_visible_gpus(gpu_ids: list[int]) -> None:
    """Show the task only its granted GPUs, as Ray does (CUDA reads this at first use)."""
    value = ",".join(str(g) for g in gpu_ids)
    if os.environ.get("CUDA_VISIBLE_DEVICES") != value:
        os.environ["CUDA_VISIBLE_DEVICES"] = value


def retryable(err: BaseException, retry_exc: Any) -> bool:
    """Whether ``retry_exceptions`` (False, True, or a tuple of types) covers ``err``."""
    if not retry_exc:
        return False
    if retry_exc is True:
        return True
    return isinstance(err, tuple(retry_exc))


_EXECUTOR_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def error_blob(name: str, err: BaseException, kind: type[TaskError] = TaskError) -> bytes:
    """Serialize a task's exception with its remote traceback (frames of sluice cut off).

    ``kind`` is the TaskError subclass to raise at ``get`` (ActorDiedError for a
    constructor that raised).
    """
    tb = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_EXECUTOR_DIR):
        tb = tb.tb_next  # by file, so the frames of a worker run as ``__main__`` go too
    text = "".join(traceback.format_exception(type(err), err, tb))
    if isinstance(err, TaskError):
        cause: BaseException | None = err
    else:
        cause = err
    try:
        return serialization.dumps(kind(name, text, cause))
    except (SerializationError, Exception):
        return serialization.dumps(kind(name, text, None))


def exit_blob(name: str) -> bytes:
    """The error of a call that ended its actor with exit_actor, and of every later call."""
    return serialization.dumps(ActorDiedError(name, (
        "the actor exited on purpose: this call ran sluice.actor.exit_actor() (or was "
        "__ray_terminate__), so it and every call after it fail; create a new actor to go on")))


def main(argv: list[str]) -> None:
    """``python -m sluice.executor.worker FD SESSION INDEX PARENT``: a worker started directly.

    Its parent is a driver (or node daemon) thread that may be short-lived, so it asks for
    no parent-death signal (see :mod:`sluice.executor.lifeline`); the end of its socket
    and the parent check stop it when the parent dies.
    """
    fd, session, index, parent = int(argv[0]), argv[1], int(argv[2]), int(argv[3])
    die_with_parent(parent, death_signal=False)
    add_driver_path()
    if not builds_venv_on_node(os.environ):  # that worker imports numpy from its virtualenv
        serialization.preload_decoders()
    serve(fd, session, index)


def add_driver_path() -> None:
    """Put the driver's ``sys.path`` (``SLUICE_SYS_PATH``) first, so its modules import here."""
    extra_path = os.environ.get("SLUICE_SYS_PATH")
    if extra_path:
        for entry in reversed(extra_path.split(os.pathsep)):
            if entry not in sys.path:
                sys.path.insert(0, entry)
    first = os.environ.get("SLUICE_ENV_PATH")  # the folders of its runtime_env go first
    if first:
        for entry in reversed(first.split(os.pathsep)):
            if entry in sys.path:
                sys.path.remove(entry)
            sys.path.insert(0, entry)


def serve(fd: int, session: str, index: int) -> None:
    """Be worker ``index`` on socket ``fd`` until told to stop or the parent is gone; never returns."""
    exit_on_hangup(fd)
    logs.redirect_worker_output(session, index)  # the driver shows what lands there
    conn = Connection(fd)
    worker = Worker(conn, session, index)
    context.set_current(worker)
    status = 0
    try:
        worker.run()
    except KeyboardInterrupt:  # a Ctrl-C at the driver's terminal reaches its workers too
        status = 130
    except BaseException:  # a sluice bug: say what it was, and let the driver see a crash
        traceback.print_exc()
        status = 70
    finally:
        context.set_current(None)
        if worker.exiting:  # exit_actor runs the actor's atexit handlers, as in Ray
            import atexit

            atexit._run_exitfuncs()
        os._exit(status)  # no interpreter teardown: the driver owns every shared resource


if __name__ == "__main__":
    main(sys.argv[1:])
