"""What the ``dask`` backend runs on the Dask workers: tasks, actor shells, relays.

:mod:`sluice.executor.dask_backend` submits these functions; Dask pickles them
by reference, so a worker imports this module (and, on its first task, builds
its own worker-side :class:`~sluice.executor.dask_backend.DaskRuntime` over
``distributed.get_client()`` for nested tasks, get, put and actor calls).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import distributed

from sluice.exceptions import ActorDiedError, TaskError, WorkerCrashedError
from sluice.executor import context
from sluice.executor.calls import decode_call, split_returns
from sluice.executor.worker import error_blob, retryable
from sluice.store import serialization


class AsIs:
    """A value handed to a Dask task as is: Dask does not look inside it for futures."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __reduce__(self):
        return (AsIs, (self.value,))


class CallSpec:
    """The fixed part of a call, opaque to Dask (no tuple-as-task parsing, no traversal).

    ``retry``: for a task, ``(max_retries, retry_exceptions, whether it counts its
    crashes)`` (see ``DaskRuntime._retry``); None for actor calls, which never rerun.
    """

    __slots__ = ("fn_id", "name", "blob", "retry", "num_returns")

    def __init__(self, fn_id: int, name: str, blob: bytes, retry: tuple | None, num_returns: int):
        self.fn_id, self.name, self.blob, self.retry, self.num_returns = fn_id, name, blob, retry, num_returns

    def __reduce__(self):
        return (CallSpec, (self.fn_id, self.name, self.blob, self.retry, self.num_returns))


_task_runtime_lock = threading.Lock()


def _task_runtime() -> Any:
    """The sluice runtime of this Dask worker process (made on first use, over its client)."""
    from sluice.executor.dask_backend import (
        DaskRuntime,  # the driver side, used here too
    )

    rt = context.current()
    if isinstance(rt, DaskRuntime):
        return rt  # an in-process cluster runs tasks beside the driver's own runtime
    with _task_runtime_lock:
        rt = context.current()
        if rt is None:
            rt = DaskRuntime(_worker_client=distributed.get_client())
            context.set_current(rt)
        elif not isinstance(rt, DaskRuntime):
            raise RuntimeError(f"this Dask worker runs inside a process that already has a sluice "
                               f"{type(rt).__name__}; run the Dask workers in their own processes")
    return rt


def _unwrap(value: Any) -> Any:
    return value.value if type(value) is AsIs else value


def _decode(spec: CallSpec, dep_values: tuple | list) -> tuple[list, dict]:
    return decode_call(spec.blob, [read_only(_unwrap(v)) for v in dep_values])


def _task_error(name: str, err: BaseException, kind: type[TaskError] = TaskError) -> BaseException:
    """The error ``get`` raises for a task's exception: exactly the local runtime's."""
    return serialization.loads(error_blob(name, err, kind)).as_instanceof_cause()


def run_task(fn_bytes: bytes | AsIs, spec: CallSpec, carried: dict, *dep_values: Any) -> Any:
    """One sluice task on a Dask worker."""
    rt = _task_runtime()
    with rt.carrying({oid: _unwrap(v) for oid, v in carried.items()}):
        return _call(rt.load_function, _unwrap(fn_bytes), spec, dep_values)


def _call(load: Any, source: Any, spec: CallSpec, dep_values: tuple | list) -> Any:
    """Call ``load(spec.fn_id, source)`` on the decoded arguments, retrying exceptions as
    ``retry_exceptions`` says, from the ``max_retries`` its crashed attempts left. The
    arguments (refs among them) die with this frame, before the caller's ``carrying`` ends."""
    retry = spec.retry
    # Reruns left: counted at once where this task is held to fewer than Dask's allowed-failures,
    # else on its first retryable exception (a round trip to the scheduler either way).
    left = _retries_left(spec.name, retry[0]) if retry is not None and retry[2] else None
    try:
        fn = load(spec.fn_id, source)
        args, kwargs = _decode(spec, dep_values)
    except Exception as err:
        raise _task_error(spec.name, err) from None
    while True:
        try:
            values = split_returns(spec.name, fn(*args, **kwargs), spec.num_returns)
            return values[0] if spec.num_returns == 1 else tuple(values)
        except Exception as err:
            if retry is None or not retryable(err, retry[1]):
                raise _task_error(spec.name, err) from None
            if left is None:
                left = _retries_left(spec.name, retry[0])
            if left <= 0:
                raise _task_error(spec.name, err) from None
            left -= 1


def _retries_left(name: str, max_retries: int) -> int:
    """``max_retries`` less the reruns Dask made because this task's workers died (the
    scheduler counts them); WorkerCrashedError once they are spent, as locally."""
    key = distributed.get_worker().get_current_task()
    crashes = distributed.get_client().run_on_scheduler(crash_count, key)
    if crashes > max_retries:
        raise WorkerCrashedError(
            f"the Dask worker running {name} died {crashes} time(s) and its retries are "
            f"spent (max_retries={max_retries}); raise max_retries or find what kills it "
            "(memory? os._exit?)")
    return max_retries - crashes


def crash_count(key: Any, dask_scheduler: Any) -> int:
    """How often a worker died while running task ``key`` (runs on the scheduler)."""
    ts = dask_scheduler.tasks.get(key)
    return ts.suspicious if ts is not None else 0


def where_held(keys: list, dask_scheduler: Any) -> dict:
    """``key -> (worker addresses holding it, its bytes or -1)`` (runs on the scheduler);
    a key the scheduler does not know (yet) is held nowhere."""
    out = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        out[key] = ([ws.address for ws in ts.who_has or ()], ts.nbytes) if ts is not None else ([], -1)
    return out


def allowed_failures(dask_scheduler: Any) -> int:
    """The scheduler's ``distributed.scheduler.allowed-failures`` (runs on the scheduler)."""
    return int(dask_scheduler.allowed_failures)


def raise_error(err: AsIs) -> None:
    raise err.value


def relay_call(actor: Any, caller: str, seq: int, method: str, spec: CallSpec, carried: dict,
                *dep_values: Any) -> Any:
    """Hand one actor call, its arguments resolved by Dask, to the actor's shell.

    It leaves the thread pool first: a relay waits while the calls before it run,
    and must not hold a slot one of their relays needs.
    """
    distributed.secede()
    values = {oid: _unwrap(v) for oid, v in carried.items()}
    try:
        return actor.call(caller, seq, method, spec, values, [_unwrap(v) for v in dep_values]).result()
    except (OSError, RuntimeError) as err:
        if isinstance(err, TaskError):
            raise  # the method's own error
        raise ActorDiedError(f"actor of {spec.name}", f"the Dask worker holding the actor is gone "
                             f"({err}); create a new actor") from None


async def skip_call(actor: Any, caller: str, seq: int) -> None:
    await actor.skip(caller, seq)


async def kill_actor(actor: Any, err: AsIs) -> None:
    await actor.kill(err.value)


def runs_any(keys: list, dask_worker: Any) -> bool:
    """Whether one of ``keys`` is running in a thread of this worker (runs on each worker)."""
    return bool(set(keys) & set(dask_worker.active_threads.values()))


def used_resources(dask_scheduler: Any) -> tuple[int, dict, bool]:
    """(tasks on the workers, declared resources in use, whether any worker declares CPU),
    read on the scheduler."""
    busy, used, cpu_declared = 0, {}, False
    for ws in dask_scheduler.workers.values():
        busy += len(ws.processing)
        cpu_declared = cpu_declared or "CPU" in (ws.resources or {})
        for name, amount in (ws.used_resources or {}).items():
            used[name] = used.get(name, 0.0) + amount
    return busy, used, cpu_declared


class ActorShell:
    """The Dask actor behind a sluice actor: the user's object plus call ordering.

    ``call`` runs on the worker's event loop: it waits until the caller's previous
    call has started, then starts this one on the shell's own threads
    (``max_concurrency``, one by default), so a caller's calls start in its order.
    """

    def __init__(self, cls_bytes: bytes | AsIs, spec: CallSpec, max_concurrency: int, carried: dict,
                 *dep_values: Any):
        rt = _task_runtime()
        self._class_name = spec.name
        with rt.carrying({oid: _unwrap(v) for oid, v in carried.items()}):
            try:
                cls = rt.load_function(spec.fn_id, _unwrap(cls_bytes))
                args, kwargs = _decode(spec, dep_values)
                self._instance = cls(*args, **kwargs)
            except Exception as err:
                raise _task_error(f"{spec.name}.__init__", err, ActorDiedError) from None
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"sluice-{spec.name}")
        self._next: dict[str, int] = {}          # caller -> number of its next call to start
        self._skipped: dict[str, set[int]] = {}  # caller -> numbers that will never arrive
        self._waiting: dict[tuple[str, int], asyncio.Future] = {}  # arrived early: wait their turn
        self._dead: ActorDiedError | None = None
        self._killed: asyncio.Future | None = None  # resolved by kill: running calls stop waiting
        self._loop: asyncio.AbstractEventLoop | None = None  # runs async methods; made on first use
        self._loop_lock = threading.Lock()

    async def call(self, caller: str, seq: int, method: str, spec: CallSpec, carried: dict,
                   dep_values: list) -> Any:
        if self._dead is None and seq > self._next.get(caller, 0):
            waiter = self._waiting[(caller, seq)] = asyncio.get_running_loop().create_future()
            await waiter
        if self._dead is not None:
            raise self._dead
        if seq < self._next.get(caller, 0):
            raise ActorDiedError(f"actor {self._class_name}", f"call {seq} of {spec.name} reached the "
                                 "actor twice (its relay's worker died); it ran once")
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._pool, self._run, method, spec, carried, dep_values)
        self._advance(caller, seq)
        if self._killed is None:
            self._killed = loop.create_future()
        await asyncio.wait([running, self._killed], return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            return running.result()
        running.add_done_callback(_ignore_outcome)  # killed: the caller no longer waits for it
        raise self._dead

    async def skip(self, caller: str, seq: int) -> None:
        """Call ``seq`` of ``caller`` will never arrive (an argument failed, or it was cancelled)."""
        if seq < self._next.get(caller, 0) or (caller, seq) in self._waiting:
            return  # it arrived: it runs or ran
        if seq == self._next.get(caller, 0):
            self._advance(caller, seq)
        else:
            self._skipped.setdefault(caller, set()).add(seq)

    async def kill(self, err: ActorDiedError) -> None:
        self._dead, self._instance = err, None
        if self._killed is not None and not self._killed.done():
            self._killed.set_result(None)
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _advance(self, caller: str, seq: int) -> None:
        nxt = seq + 1
        skipped = self._skipped.get(caller)
        while skipped and nxt in skipped:
            skipped.discard(nxt)
            nxt += 1
        self._next[caller] = nxt
        waiter = self._waiting.pop((caller, nxt), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _run(self, method: str, spec: CallSpec, carried: dict, dep_values: list) -> Any:
        if self._dead is not None:
            raise self._dead
        with _task_runtime().carrying(carried):
            return _call(self._bound, method, spec, dep_values)

    def _bound(self, fn_id: int, method: str) -> Any:
        """The method to call (``_call``'s loader); an async one runs on the actor's own loop."""
        bound = getattr(self._instance, method)
        if not inspect.iscoroutinefunction(bound):
            return bound
        return lambda *args, **kwargs: asyncio.run_coroutine_threadsafe(
            bound(*args, **kwargs), self._event_loop()).result()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop of the actor's async methods: one thread, so their state stays on one loop."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=_serve, args=(self._loop,), daemon=True,
                                 name=f"sluice-{self._class_name}-loop").start()
            return self._loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run an actor's loop until ``kill`` stops it, then close it in its own thread."""
    try:
        loop.run_forever()
    finally:
        loop.close()


def _ignore_outcome(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: asyncio does not log it as never retrieved


def read_only(value: Any) -> Any:
    """A numpy array made read-only, as the local store hands them out: code that writes
    into an input or a result fails alike on every backend (and cannot change the copy
    a Dask worker keeps for other tasks)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value


def task_name(key: Any) -> str:
    """A task's name from its Dask key (``name-<uuid hex>``)."""
    head, _, tail = str(key).rpartition("-")
    return head if head and len(tail) == 32 else str(key)


def fits(demand: dict[str, float], declared: list[dict]) -> bool:
    """Whether one worker has all of ``demand`` (a task runs on one worker)."""
    return any(all(w.get(name, 0.0) >= amount for name, amount in demand.items()) for w in declared)


def infeasible_hint(demand: dict[str, float], declared: list[dict]) -> str:
    for name, amount in demand.items():
        most = max(w.get(name, 0.0) for w in declared)
        if most >= amount:
            continue
        have = (f"the Dask workers have at most {most:g} {name}" if any(declared)
                else "no Dask worker declares any resources")
        if name == "GPU":
            return f"num_gpus={amount:g} requested but {have}; start workers with " \
                   "`dask worker ... --resources GPU=N` or drop the request"
        if name == "CPU":
            return f"num_cpus={amount:g} requested but {have}; lower num_cpus or start workers with " \
                   "`--resources CPU=N`"
        return f"resources={{{name!r}: {amount:g}}} requested but {have}; start workers with " \
               f"`dask worker ... --resources {name}=N` or drop the request"
    return (f"resources {demand} requested, but no single Dask worker has all of them "
            f"(a task runs on one worker); the workers declare {declared}")
