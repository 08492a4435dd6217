"""The ``dask`` backend: sluice tasks, actors and Plans on a dask.distributed cluster.

``sluice.init(backend="dask", address=...)`` installs a :class:`DaskRuntime`, the
runtime interface of the local :class:`~sluice.executor.runtime.Runtime` built on
Dask futures. Each ObjectRef maps to a ``distributed.Future``, dropped (so Dask
frees the data) when the last ref dies.

- A task is one Dask task running :func:`_run_task`: the function is sent once
  as Dask data and unpickled once per worker process; its exception comes back
  as the ``TaskError``-and-original-type the local runtime raises.
- Top-level ObjectRef arguments are Dask dependencies (the task gets values);
  refs nested in arguments reach the task as refs, their values shipped along,
  so ``sluice.get`` on them works inside the task.
- An actor is a Dask actor, an :class:`_ActorShell` around the user's object.
  Each call is a relay task that depends on the call's arguments and hands them
  to the shell with a per-caller number; the shell starts each caller's calls
  in that order.
- Inside a task or actor, a worker-side ``DaskRuntime`` over
  ``distributed.get_client()`` serves nested tasks, get, put, wait and actor calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import operator
import secrets
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import distributed
from distributed import Client, Future, fire_and_forget
from distributed.scheduler import KilledWorker
from distributed.threadpoolexecutor import thread_state as pool_state
from distributed.utils import CancelledError, thread_state as task_state

from sluice.exceptions import (ActorDiedError, GetTimeoutError, InfeasibleResourceError, InternalError,
                               ObjectLostError, TaskCancelledError, TaskError, WorkerCrashedError)
from sluice.executor import context
from sluice.executor.calls import decode_call, encode_call, load_function
from sluice.executor.object_ref import OWNER_SHIFT, ObjectRef
from sluice.executor.resources import demand_key
from sluice.executor.worker import error_blob, retryable
from sluice.store import serialization

ACTOR_DATASET = "sluice-actor-{:016x}"
"""Dask dataset holding an actor's future, so code in tasks can call the actor by id."""
NAMED_DATASET = "sluice-named-actor-{}"
"""Dataset of a named actor: (actor id, class name, method table, actor future)."""
INLINE_FUNCTION_MAX = 64 << 10
"""Pickled functions up to this size travel inside each task; larger ones are broadcast once."""


@dataclass
class _Actor:
    """What a runtime knows of one actor."""

    future: Future            # resolves to the Dask Actor proxy of the _ActorShell
    class_name: str
    name: str | None
    methods: dict
    owned: bool               # created by this runtime: it unpublishes it
    next_seq: int = 0         # number of this runtime's next call (the shell starts them in order)
    dead: ActorDiedError | None = None


class _Literal:
    """A value handed to a Dask task as is: Dask does not look inside it for futures."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __reduce__(self):
        return (_Literal, (self.value,))


class _CallSpec:
    """The fixed part of a call, opaque to Dask (no tuple-as-task parsing, no traversal)."""

    __slots__ = ("fn_id", "name", "blob", "retry", "num_returns")

    def __init__(self, fn_id: int, name: str, blob: bytes, retry: tuple | None, num_returns: int):
        self.fn_id, self.name, self.blob, self.retry, self.num_returns = fn_id, name, blob, retry, num_returns

    def __reduce__(self):
        return (_CallSpec, (self.fn_id, self.name, self.blob, self.retry, self.num_returns))


class DaskRuntime:
    """A sluice runtime whose tasks, objects and actors live on a dask.distributed cluster.

    ``address`` is a scheduler address (``"tcp://host:8786"``), an existing
    ``distributed.Client`` (used as is and left open at shutdown), or None for
    a new local Dask cluster.
    """

    is_driver = True

    def __init__(self, address: Any = None, *, _worker_client: Client | None = None):
        if _worker_client is not None:
            self.client, self._own_client, self.is_driver = _worker_client, False, False
        elif isinstance(address, Client):
            if address.asynchronous:
                raise ValueError("init(backend='dask', address=client): the Client is asynchronous; "
                                 "pass a synchronous distributed.Client or its scheduler address")
            self.client, self._own_client = address, False
        elif address is None or isinstance(address, str):
            self.client, self._own_client = Client(address, set_as_default=False), True
        else:
            raise TypeError(f"init(backend='dask', address={address!r}): give a scheduler address like "
                            "'tcp://127.0.0.1:8786' or a distributed.Client")
        self.caller = uuid.uuid4().hex  # names this runtime to actors: call order is per caller
        self._owner = 0 if self.is_driver else secrets.randbelow((1 << 22) - 1) + 1
        self._ids = itertools.count(1)
        self._key_counter = itertools.count()
        self._lock = threading.Lock()
        self._ref_events: deque = deque()     # (+1 | -1, oid) from ObjectRef lifetimes, any thread
        self._handle_events: deque = deque()  # (+1 | -1 | 0 pickled, actor id) from driver handles
        # Invariant: _futures/_values/_parents hold an oid only while _counts does (refs + pins).
        self._counts: dict[int, int] = {}
        self._futures: dict[int, Future] = {}    # oid -> future of its value
        self._values: dict[int, Any] = {}        # oid -> value shipped into a running task
        self._parents: dict[int, Future] = {}    # oid -> the call future of a num_returns > 1 result
        self._functions: dict[int, Future] = {}  # fn id -> its cloudpickle bytes, scattered
        self._loaded: dict[int, Any] = {}        # fn id -> the unpickled function (worker side)
        self._actors: dict[int, _Actor] = {}
        self._handles: dict[int, int] = {}       # actor id -> live driver handles
        self._escaped: set[int] = set()          # a handle was pickled: never retired early
        self._named: dict[str, int] = {}
        self._unpublish: list[str] = []          # datasets of retired actors, dropped unlocked
        self._inflight: dict[str, Future] = {}   # relay key -> future, held until the call ends
        self._feasible: dict[tuple, dict | None] = {}
        self._cancelled: set[str] = set()        # keys cancelled by sluice.cancel (not lost)
        self._closed = False

    # -- runtime interface: refs ---------------------------------------------------------
    def add_local_ref(self, oid: int) -> None:
        self._ref_events.append((1, oid))

    def remove_local_ref(self, oid: int) -> None:
        self._ref_events.append((-1, oid))

    def actor_handle_event(self, actor_id: int, delta: int) -> None:
        """A driver-side actor handle was made (+1), dropped (-1) or pickled (0)."""
        self._handle_events.append((delta, actor_id))

    def new_object_id(self) -> int:
        return (self._owner << OWNER_SHIFT) | next(self._ids)

    def _key(self, name: str) -> str:
        """A fresh Dask key, ``name-<32 hex>`` (Dask groups tasks by ``name``): this runtime's
        random prefix plus a counter, unique on the cluster without a uuid per call."""
        return f"{name}-{self.caller[:20]}{next(self._key_counter):012x}"

    def new_actor_id(self) -> int:
        return secrets.randbits(62) + 1  # cluster-wide: runtimes share the actor datasets

    def _apply_events(self) -> None:
        """Apply queued ref and handle events (lock held; events come from ``__del__``)."""
        events, counts = self._ref_events, self._counts
        while events:
            delta, oid = events.popleft()
            n = counts.get(oid, 0) + delta
            if n > 0:
                counts[oid] = n
                continue
            counts.pop(oid, None)
            self._futures.pop(oid, None)
            self._values.pop(oid, None)
            self._parents.pop(oid, None)
        while self._handle_events:
            delta, actor_id = self._handle_events.popleft()
            if delta == 0:
                self._escaped.add(actor_id)
                continue
            n = self._handles[actor_id] = self._handles.get(actor_id, 0) + delta
            actor = self._actors.get(actor_id)
            if n <= 0:
                del self._handles[actor_id]
                if actor is not None and actor.owned and actor.name is None and actor_id not in self._escaped:
                    # Relays depend on the actor future: Dask keeps the actor until they ran.
                    del self._actors[actor_id]
                    self._unpublish.append(ACTOR_DATASET.format(actor_id))

    def _sync(self) -> None:
        """Apply events, then unpublish retired actors (an RPC, so outside the lock)."""
        with self._lock:
            self._apply_events()
            names, self._unpublish = self._unpublish, []
        for name in names:
            self._try_unpublish(name)

    def _arg_for(self, oid: int) -> Any:
        """What a task gets for object ``oid``: its future, or a value this process has (lock held)."""
        fut = self._futures.get(oid)
        if fut is not None:
            return fut
        if oid in self._values:
            return _Literal(self._values[oid])
        hint = ("it was made inside a task, and on the dask backend such a ref cannot leave its task; "
                "return the value instead" if oid >> OWNER_SHIFT != self._owner else
                "it was freed, or it belongs to a runtime that was shut down; keep its ObjectRef alive "
                "while you need it")
        raise ObjectLostError(f"object {oid:x} is gone: {hint}")

    def _encode(self, name: str, args: tuple, kwargs: dict) -> tuple[bytes, list, dict, list]:
        """(args blob, Dask arguments of its top-level refs, nested refs by id, refs to keep)."""
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        self._sync()
        with self._lock:
            return blob, [self._arg_for(o) for o in deps], {o: self._arg_for(o) for o in contained}, keep

    def _register(self, fut: Future, n: int, name: str) -> list[ObjectRef]:
        """Refs for a call's results: the future itself, or one getitem future per value."""
        with self._lock:
            self._apply_events()
            if n == 1:
                oid = self.new_object_id()
                self._futures[oid] = fut
                return [ObjectRef(oid, self)]
            refs = []
            for i in range(n):
                oid = self.new_object_id()
                self._futures[oid] = self.client.submit(operator.getitem, fut, i, pure=False,
                                                        key=self._key(f"{name}-{i}"))
                self._parents[oid] = fut
                refs.append(ObjectRef(oid, self))
            return refs

    @contextlib.contextmanager
    def carrying(self, values: dict[int, Any]) -> Iterator[None]:
        """Inside a task: the values of refs nested in its arguments, gettable by id meanwhile."""
        with self._lock:
            self._apply_events()
            for oid, value in values.items():
                self._values.setdefault(oid, value)
                self._counts[oid] = self._counts.get(oid, 0) + 1
        try:
            yield
        finally:
            self._ref_events.extend((-1, oid) for oid in values)
            with self._lock:  # the task's own refs died with it: free their futures now
                self._apply_events()

    # -- runtime interface: submission -----------------------------------------------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict) -> list[ObjectRef]:
        """Submit ``fn(*args, **kwargs)`` as a Dask task; returns one ref per declared return value."""
        resources = self._resources(options, f"task {name}")
        blob, dep_args, carried, keep = self._encode(name, args, kwargs)
        retry = (options["max_retries"], options["retry_exceptions"]) if options["retry_exceptions"] else None
        spec = _CallSpec(fn_id, name, blob, retry, options["num_returns"])
        fut = self.client.submit(_run_task, self._function(fn_id, fn_bytes), spec, carried, *dep_args,
                                 pure=False, key=self._key(name), resources=resources)
        fire_and_forget(fut)  # as in the local runtime, a task runs even if its refs are dropped
        del keep  # Dask holds the auto-put arguments as dependencies now
        return self._register(fut, spec.num_returns, name)

    def create_actor(self, actor_id: int, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict) -> None:
        """Start a Dask actor holding ``cls(*args, **kwargs)``; a named one is cluster-wide."""
        class_name, actor_name = options["class_name"], options.get("name")
        resources = self._resources(options, f"actor {class_name}")
        taken = ValueError(f"an actor named {actor_name!r} already exists; pick another name "
                           f"or reach the existing one with sluice.get_actor({actor_name!r})")
        if actor_name is not None and self.lookup("actor", actor_name) is not None:
            raise taken
        blob, dep_args, carried, keep = self._encode(name, args, kwargs)
        fut = self.client.submit(_ActorShell, self._function(cls_id, cls_bytes),
                                 _CallSpec(cls_id, class_name, blob, None, 1),
                                 options.get("max_concurrency") or 1, carried, *dep_args, actor=True,
                                 pure=False, key=self._key(class_name), resources=resources)
        methods = options.get("_methods", {})
        self.client.publish_dataset(fut, name=ACTOR_DATASET.format(actor_id))
        if actor_name is not None:
            try:
                self.client.publish_dataset((actor_id, class_name, methods, fut),
                                            name=NAMED_DATASET.format(actor_name))
            except KeyError:  # another runtime took the name meanwhile
                self._try_unpublish(ACTOR_DATASET.format(actor_id))
                self.client.cancel([fut], force=True)
                raise taken from None
        with self._lock:
            self._actors[actor_id] = _Actor(fut, class_name, actor_name, methods, owned=True)
            if actor_name is not None:
                self._named[actor_name] = actor_id
        del keep

    def submit_actor_task(self, actor_id: int, method: str, name: str, args: tuple, kwargs: dict,
                          options: dict) -> list[ObjectRef]:
        """Call ``method`` on an actor; calls from this runtime start in the order they were made."""
        n = options["num_returns"]
        self._sync()
        actor = self._actor(actor_id)
        if actor is None or actor.dead is not None:
            err = actor.dead if actor is not None else ActorDiedError(
                f"actor {actor_id:x}", "no such actor is alive on this Dask cluster: it was killed, or "
                "every handle to it was dropped")
            return self._register(self.client.submit(_raise, _Literal(err), pure=False,
                                                     key=self._key(name)), n, name)
        blob, dep_args, carried, keep = self._encode(name, args, kwargs)
        with self._lock:  # numbers are taken in submission order
            seq, actor.next_seq = actor.next_seq, actor.next_seq + 1
        fut = self.client.submit(_relay_call, actor.future, self.caller, seq, method,
                                 _CallSpec(0, name, blob, None, n), carried, *dep_args, pure=False,
                                 key=self._key(name))
        self._inflight[fut.key] = fut  # its done-callback must run even if the caller drops the ref
        fut.add_done_callback(_CallDone(self, actor.future, seq))
        del keep
        return self._register(fut, n, name)

    def submit_actor_chain(self, hops: list, first: Any) -> None:
        """Forwarded actor chains are a local-runtime feature: a Plan makes ordinary calls here."""
        return None

    def _call_done(self, fut: Future, actor_future: Future, seq: int) -> None:
        """A relay ended. If it never reached the actor (an argument failed, it was cancelled),
        the actor must skip its number, or the caller's later calls would wait for it forever."""
        self._inflight.pop(fut.key, None)
        if fut.status == "finished" or self._closed:
            return
        with contextlib.suppress(Exception):  # the client is closing: nothing waits any more
            fire_and_forget(self.client.submit(_skip_call, actor_future, self.caller, seq, pure=False))

    def _actor(self, actor_id: int) -> _Actor | None:
        actor = self._actors.get(actor_id)
        if actor is None:  # another runtime's actor (a handle passed into this task)
            fut = self.client.get_dataset(ACTOR_DATASET.format(actor_id), default=None)
            if fut is None:
                return None
            with self._lock:
                actor = self._actors.setdefault(actor_id, _Actor(fut, "", None, {}, owned=False))
        return actor

    def put(self, value: Any) -> ObjectRef:
        """Scatter ``value`` to a Dask worker once; pass the ref to many tasks."""
        if isinstance(value, ObjectRef):
            raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself along")
        [fut] = self.client.scatter([value], hash=False)
        return self._register(fut, 1, "put")[0]

    def kill(self, actor_id: int, no_restart: bool = True) -> None:
        """Stop an actor: its queued and later calls raise ``ActorDiedError``; a running call
        finishes (Dask cannot interrupt it). Dask actors never restart."""
        self._sync()
        actor = self._actor(actor_id)
        if actor is None or actor.dead is not None:
            return
        actor.dead = ActorDiedError(f"actor {actor.class_name or f'{actor_id:x}'}",
                                    "the actor was killed by sluice.kill(); create a new one to go on")
        with self._blocking(), contextlib.suppress(Exception):  # its constructor failed: dead already
            self.client.submit(_kill_actor, actor.future, _Literal(actor.dead), pure=False).result()
        with self._lock:
            if actor.name is not None and self._named.get(actor.name) == actor_id:
                del self._named[actor.name]
        self._try_unpublish(ACTOR_DATASET.format(actor_id))
        if actor.name is not None:
            self._try_unpublish(NAMED_DATASET.format(actor.name))

    def cancel(self, ref: ObjectRef, force: bool = False) -> None:
        """Cancel the task computing ``ref``; a running task is abandoned (Dask cannot stop it)."""
        with self._lock:
            self._apply_events()
            futs = [f for f in (self._futures.get(ref.id), self._parents.get(ref.id)) if f is not None]
            parent = self._parents.get(ref.id)
            siblings = [self._futures[o] for o, p in self._parents.items() if p is parent and o in self._futures]
            self._cancelled.update(f.key for f in futs + siblings)
        if futs:  # force: the fire-and-forget marker "wants" the key too
            self.client.cancel(futs, force=True)

    def lookup(self, what: str, arg: Any) -> Any:
        if what == "actor":
            with self._lock:
                actor_id = self._named.get(arg)
                actor = self._actors.get(actor_id) if actor_id is not None else None
            if actor is not None and actor.dead is None:
                return (actor_id, actor.class_name, actor.methods)
            found = self.client.get_dataset(NAMED_DATASET.format(arg), default=None)
            if found is None:
                return None
            actor_id, class_name, methods, fut = found
            with self._lock:
                self._actors.setdefault(actor_id, _Actor(fut, class_name, arg, methods, owned=False))
            return (actor_id, class_name, methods)
        if what == "resources":
            return self._total_resources() if arg == "total" else self._available_resources()
        raise ValueError(f"unknown lookup {what!r}")

    # -- runtime interface: blocking ---------------------------------------------------------
    def get(self, refs: list[ObjectRef], timeout: float | None) -> list:
        """Values of ``refs``; a task's exception re-raises as TaskError and its own type."""
        with self._lock:
            self._apply_events()
            items = [self._arg_for(r.id) for r in refs]
        futs = [f for f in items if isinstance(f, Future)]
        values = iter(self._gather(futs, timeout) if futs else ())
        return [_read_only(next(values) if isinstance(f, Future) else f.value) for f in items]

    def _gather(self, futs: list[Future], timeout: float | None) -> list:
        with self._blocking():
            try:
                if timeout is not None:
                    try:
                        distributed.wait(futs, timeout=timeout)
                    except TimeoutError:
                        raise GetTimeoutError(
                            f"get timed out after {timeout}s with {sum(not f.done() for f in futs)} of "
                            f"{len(futs)} objects not ready; raise the timeout or check the tasks with "
                            "sluice.wait()") from None
                return self.client.gather(futs)
            except CancelledError:
                key = next((f.key for f in futs if f.cancelled()), "?")
                if key in self._cancelled:
                    raise TaskCancelledError(f"task {_task_name(key)} was cancelled") from None
                raise ObjectLostError(  # Dask cancels what depends on lost scattered data
                    f"task {_task_name(key)} cannot run: an object it needs was lost with a Dask worker "
                    "(put values cannot be recomputed); put it again and resubmit") from None
            except KilledWorker as err:
                raise WorkerCrashedError(
                    f"task {_task_name(getattr(err, 'task', '?'))}: the Dask workers running it died too "
                    "often (the cluster's distributed.scheduler.allowed-failures); see the worker logs"
                ) from None

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None) -> list[int]:
        """Ids among ``refs`` that are ready, once ``num_returns`` are or ``timeout`` passes."""
        with self._lock:
            self._apply_events()
            items = {r.id: self._futures.get(r.id) for r in refs}  # None: a value here, or gone
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._blocking():
            while sum(f is None or f.done() for f in items.values()) < num_returns:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                pending = [f for f in items.values() if f is not None and not f.done()]
                try:
                    distributed.wait(pending, timeout=left, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    break
                except CancelledError:
                    continue  # a cancelled future counts as ready: count again
        return [oid for oid, f in items.items() if f is None or f.done()]

    @contextlib.contextmanager
    def _blocking(self) -> Iterator[None]:
        """Inside a Dask task, leave the worker's thread pool while blocked, so the tasks
        waited for can run: nested parallelism never deadlocks the pool."""
        in_task = getattr(task_state, "key", None) is not None and getattr(pool_state, "proceed", False)
        if in_task:
            distributed.secede()
        try:
            with self.client.as_current():  # distributed.wait finds the client here
                yield
        finally:
            if in_task:
                distributed.rejoin()

    # -- functions and resources ---------------------------------------------------------------
    def _function(self, fn_id: int, fn_bytes: bytes) -> Any:
        """The pickled function as a task gets it (each worker unpickles it once).

        A small one travels inside each task. A large one is put on every worker
        once: as a scattered dependency on one worker only, it would draw every
        task to that worker, and die with it.
        """
        if len(fn_bytes) <= INLINE_FUNCTION_MAX:
            return _Literal(fn_bytes)
        fut = self._functions.get(fn_id)
        if fut is None:
            key = f"sluice-fn-{fn_id:016x}-{self.caller[:8]}"
            fut = self._functions.setdefault(fn_id, self.client.scatter({key: fn_bytes}, broadcast=True)[key])
        return fut

    def load_function(self, fn_id: int, fn_bytes: bytes) -> Any:
        """The function of ``fn_id``, unpickled once per process."""
        fn = self._loaded.get(fn_id)
        if fn is None:
            fn = self._loaded[fn_id] = load_function(fn_bytes)
        return fn

    def _resources(self, options: dict, what: str) -> dict | None:
        """The Dask resource restrictions of a demand; raises if no worker could ever meet it.

        CPUs are reserved only where the workers declare a CPU resource (else a Dask
        thread is a task's CPU), and not for tasks submitted from tasks: their parent,
        blocked in get, holds its own (as the local runtime lends a blocked task's CPUs).
        """
        key = demand_key(options["num_cpus"], options["num_gpus"], options["resources"])
        if key not in self._feasible:
            declared = self._declared_resources()
            demand = dict(key)
            if not self.is_driver or not any("CPU" in w for w in declared):
                demand.pop("CPU", None)
            if demand and not _fits(demand, declared):
                declared = self._declared_resources()  # workers may have joined since
                if declared and not _fits(demand, declared):  # no workers yet: Dask waits for them
                    raise InfeasibleResourceError(f"{what}: {_infeasible_hint(demand, declared)}")
            self._feasible[key] = demand or None
        return self._feasible[key]

    def _declared_resources(self) -> list[dict]:
        return [dict(w.get("resources") or {}) for w in self.client.scheduler_info()["workers"].values()]

    def _total_resources(self) -> dict[str, float]:
        workers = self.client.scheduler_info()["workers"].values()
        total = {"CPU": float(sum(w.get("nthreads", 0) for w in workers)), "GPU": 0.0}
        declared: dict[str, float] = {}
        for w in workers:
            for name, amount in (w.get("resources") or {}).items():
                declared[name] = declared.get(name, 0.0) + float(amount)
        return {**total, **declared}

    def _available_resources(self) -> dict[str, float]:
        total = self._total_resources()
        try:
            busy, used = self.client.run_on_scheduler(_used_resources)
        except Exception:  # the scheduler does not run functions: report the totals
            return total
        available = {name: amount - used.get(name, 0.0) for name, amount in total.items()}
        if "CPU" not in used:  # CPUs are threads: one per running task
            available["CPU"] = max(0.0, total["CPU"] - busy)
        return available

    # -- lifecycle ---------------------------------------------------------------------------
    def _try_unpublish(self, name: str) -> None:
        with contextlib.suppress(Exception):  # already gone, or the scheduler went away
            self.client.unpublish_dataset(name)

    def shutdown(self) -> None:
        """Release every future and actor of this runtime; close the Client only if it made it."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._apply_events()
            owned = {a: actor for a, actor in self._actors.items() if actor.owned and actor.dead is None}
            names = self._unpublish + [ACTOR_DATASET.format(a) for a in owned]
            names += [NAMED_DATASET.format(actor.name) for actor in owned.values() if actor.name]
            # A handle passed into a task may be cached on a worker: stop those actors outright.
            escaped = [actor.future for a, actor in owned.items() if a in self._escaped]
            for table in (self._futures, self._values, self._parents, self._functions, self._actors,
                          self._inflight, self._named, self._counts, self._cancelled):
                table.clear()
        stopped = _Literal(ActorDiedError("actor", "its sluice runtime was shut down"))
        for fut in escaped:
            with contextlib.suppress(Exception):
                fire_and_forget(self.client.submit(_kill_actor, fut, stopped, pure=False))
        for name in names:
            self._try_unpublish(name)
        if self._own_client:
            self.client.close()


class _CallDone:
    """Done-callback of a relay future (runs on a Dask callback thread)."""

    __slots__ = ("runtime", "actor_future", "seq")

    def __init__(self, runtime: DaskRuntime, actor_future: Future, seq: int):
        self.runtime, self.actor_future, self.seq = runtime, actor_future, seq

    def __call__(self, fut: Future) -> None:
        self.runtime._call_done(fut, self.actor_future, self.seq)


# -- what runs on the Dask workers ---------------------------------------------------------------

_task_runtime_lock = threading.Lock()


def _task_runtime() -> DaskRuntime:
    """The sluice runtime of this Dask worker process (made on first use, over its client)."""
    rt = context.current()
    if isinstance(rt, DaskRuntime):
        return rt  # an in-process cluster runs tasks beside the driver's own runtime
    with _task_runtime_lock:
        rt = context.current()
        if rt is None:
            rt = DaskRuntime(_worker_client=distributed.get_client())
            context.set_current(rt)
        elif not isinstance(rt, DaskRuntime):
            raise InternalError(f"a Dask worker process already runs a {type(rt).__name__}; "
                                "run the Dask workers in their own processes")
    return rt


def _unwrap(value: Any) -> Any:
    return value.value if type(value) is _Literal else value


def _decode(spec: _CallSpec, dep_values: tuple | list) -> tuple[list, dict]:
    return decode_call(spec.blob, [_read_only(_unwrap(v)) for v in dep_values])


def _task_error(name: str, err: BaseException, kind: type[TaskError] = TaskError) -> BaseException:
    """The error ``get`` raises for a task's exception: exactly the local runtime's."""
    return serialization.loads(error_blob(name, err, kind)).as_instanceof_cause()


def _check_returns(name: str, value: Any, n: int) -> Any:
    if n == 1:
        return value
    try:
        values = tuple(value)
    except TypeError:
        values = None
    if values is None or len(values) != n:
        raise ValueError(f"{name} declared num_returns={n} but returned {type(value).__name__} "
                         f"{value!r:.80}; return a tuple of that length")
    return values


def _run_task(fn_bytes: bytes | _Literal, spec: _CallSpec, carried: dict, *dep_values: Any) -> Any:
    """One sluice task on a Dask worker; exceptions are retried as ``retry_exceptions`` says."""
    rt = _task_runtime()
    with rt.carrying({oid: _unwrap(v) for oid, v in carried.items()}):
        try:
            fn = rt.load_function(spec.fn_id, _unwrap(fn_bytes))
            args, kwargs = _decode(spec, dep_values)
        except Exception as err:
            raise _task_error(spec.name, err) from None
        for attempt in itertools.count():
            try:
                return _check_returns(spec.name, fn(*args, **kwargs), spec.num_returns)
            except Exception as err:
                if spec.retry is None or attempt >= spec.retry[0] or not retryable(err, spec.retry[1]):
                    raise _task_error(spec.name, err) from None


def _raise(err: _Literal) -> None:
    raise err.value


def _relay_call(actor: Any, caller: str, seq: int, method: str, spec: _CallSpec, carried: dict,
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


async def _skip_call(actor: Any, caller: str, seq: int) -> None:
    await actor.skip(caller, seq)


async def _kill_actor(actor: Any, err: _Literal) -> None:
    await actor.kill(err.value)


def _used_resources(dask_scheduler: Any) -> tuple[int, dict]:
    """(tasks on the workers, declared resources in use), read on the scheduler."""
    busy, used = 0, {}
    for ws in dask_scheduler.workers.values():
        busy += len(ws.processing)
        for name, amount in (ws.used_resources or {}).items():
            used[name] = used.get(name, 0.0) + amount
    return busy, used


class _ActorShell:
    """The Dask actor behind a sluice actor: the user's object plus call ordering.

    ``call`` runs on the worker's event loop: it waits until the caller's previous
    call has started, then starts this one on the shell's own threads
    (``max_concurrency``, one by default), so a caller's calls start in its order.
    """

    def __init__(self, cls_bytes: bytes | _Literal, spec: _CallSpec, max_concurrency: int, carried: dict,
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

    async def call(self, caller: str, seq: int, method: str, spec: _CallSpec, carried: dict,
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

    def _run(self, method: str, spec: _CallSpec, carried: dict, dep_values: list) -> Any:
        if self._dead is not None:
            raise self._dead
        rt = _task_runtime()
        with rt.carrying(carried):
            try:
                args, kwargs = _decode(spec, dep_values)
                value = getattr(self._instance, method)(*args, **kwargs)
                if inspect.iscoroutine(value):
                    value = asyncio.run_coroutine_threadsafe(value, self._event_loop()).result()
                return _check_returns(spec.name, value, spec.num_returns)
            except Exception as err:
                raise _task_error(spec.name, err) from None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop of the actor's async methods: one thread, so their state stays on one loop."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, daemon=True,
                                 name=f"sluice-{self._class_name}-loop").start()
            return self._loop


def _ignore_outcome(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: asyncio does not log it as never retrieved


def _read_only(value: Any) -> Any:
    """A numpy array made read-only, as the local store hands them out: code that writes
    into an input or a result fails alike on every backend (and cannot change the copy
    a Dask worker keeps for other tasks)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value


def _task_name(key: Any) -> str:
    """A task's name from its Dask key (``name-<uuid hex>``)."""
    head, _, tail = str(key).rpartition("-")
    return head if head and len(tail) == 32 else str(key)


def _fits(demand: dict[str, float], declared: list[dict]) -> bool:
    """Whether one worker has all of ``demand`` (a task runs on one worker)."""
    return any(all(w.get(name, 0.0) >= amount for name, amount in demand.items()) for w in declared)


def _infeasible_hint(demand: dict[str, float], declared: list[dict]) -> str:
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
