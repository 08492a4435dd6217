"""The ``dask`` backend: sluice tasks, actors and Plans on a dask.distributed cluster.

``sluice.init(backend="dask", address=...)`` installs a :class:`DaskRuntime`:
the same runtime interface as the local :class:`~sluice.executor.runtime.Runtime`,
implemented with Dask futures. Each ObjectRef maps to a ``distributed.Future``;
the future is dropped (and Dask frees the data) when the last ref dies.

- A task is one Dask task running :func:`_run_task`, which unpickles the
  function once per worker process and raises a task's exception as the same
  ``TaskError``-and-original-type the local runtime raises.
- Top-level ObjectRef arguments are Dask dependencies (resolved to values);
  refs nested in arguments reach the task as refs whose values Dask shipped
  along, so ``sluice.get`` on them works inside the task.
- An actor is a Dask actor (an :class:`_ActorShell` holding the user's object).
  Each call is an async relay task that depends on the call's arguments and
  forwards them with a per-caller sequence number; the shell starts calls in
  that order, so calls from one caller run in the order they were made.
- Code inside a task or actor gets a worker-side ``DaskRuntime`` over
  ``distributed.get_client()``: nested tasks, ``get``, ``put`` and actor calls work.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import operator
import secrets
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator

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
"""Dask dataset name under which every actor's future is published (worker-side calls)."""
NAMED_DATASET = "sluice-named-actor-{}"
"""Dataset of a named actor: (actor id, class name, method table, actor future)."""


@dataclass
class _Actor:
    """What a runtime knows of one actor."""

    future: Future            # resolves to the Dask Actor proxy of the _ActorShell
    class_name: str
    name: str | None
    methods: dict
    owned: bool               # created by this runtime: it publishes and unpublishes it
    next_seq: int = 0         # this runtime's next call number (the shell runs them in order)
    dead: ActorDiedError | None = None


class _Literal:
    """A value handed to a Dask task as is: Dask does not look inside it for futures."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __reduce__(self):
        return (_Literal, (self.value,))


class _CallSpec:
    """The static part of a call: Dask passes it through untouched (no tuple-as-task parsing)."""

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
            self.client = Client(address, set_as_default=False) if address else Client(set_as_default=False)
            self._own_client = True
        else:
            raise TypeError(f"init(backend='dask', address={address!r}): give a scheduler address like "
                            "'tcp://127.0.0.1:8786' or a distributed.Client")
        self.caller = uuid.uuid4().hex    # names this runtime to actors: calls are ordered per caller
        self._token = self.caller[:8]
        self._owner = 0 if self.is_driver else secrets.randbelow((1 << 22) - 1) + 1
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._ref_events: deque = deque()       # (+1 | -1, oid) from ObjectRef lifetimes, any thread
        self._handle_events: deque = deque()    # (+1 | -1 | 0 pickled, actor id) from driver handles
        # Invariant: an oid is in _counts while a ref or a pin holds it; _futures/_values/_parents
        # entries exist only for counted oids (dropped when the count reaches 0).
        self._counts: dict[int, int] = {}
        self._futures: dict[int, Future] = {}   # oid -> future of its value
        self._values: dict[int, Any] = {}       # oid -> value shipped into this task (worker side)
        self._parents: dict[int, Future] = {}   # oid -> the task future of a num_returns > 1 call
        self._functions: dict[int, Future] = {}  # fn id -> scattered cloudpickle bytes
        self._loaded: dict[int, Any] = {}       # fn id -> unpickled function (worker side)
        self._actors: dict[int, _Actor] = {}
        self._handles: dict[int, int] = {}      # actor id -> live driver handles
        self._escaped: set[int] = set()         # a handle was pickled: never retired early
        self._named: dict[str, int] = {}
        self._unpublish: list[str] = []         # datasets of retired actors, dropped outside the lock
        self._inflight: dict[str, Future] = {}  # relay key -> future, held until the call finishes
        self._feasible: dict[tuple, dict | None] = {}
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

    def new_actor_id(self) -> int:
        return secrets.randbits(62) + 1  # cluster-wide: several runtimes share the datasets

    def _apply_events(self) -> None:
        """Apply queued ref and handle events; call with the lock held."""
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
        handle_events = self._handle_events
        while handle_events:
            delta, actor_id = handle_events.popleft()
            if delta == 0:
                self._escaped.add(actor_id)
                continue
            n = self._handles.get(actor_id, 0) + delta
            if n > 0:
                self._handles[actor_id] = n
                continue
            self._handles.pop(actor_id, None)
            actor = self._actors.get(actor_id)
            if actor is not None and actor.owned and actor.name is None and actor_id not in self._escaped:
                # Pending relays depend on the actor future: Dask keeps the actor until they ran.
                del self._actors[actor_id]
                self._unpublish.append(ACTOR_DATASET.format(actor_id))

    def _sync(self) -> None:
        """Apply events, then unpublish the datasets of retired actors (an RPC, so unlocked)."""
        with self._lock:
            self._apply_events()
            names, self._unpublish = self._unpublish, []
        for name in names:
            self._try_unpublish(name)

    def _arg_for(self, oid: int) -> Any:
        """What a task gets for object ``oid``: its future, or a value this process already has."""
        fut = self._futures.get(oid)
        if fut is not None:
            return fut
        if oid in self._values:
            return _Literal(self._values[oid])
        raise ObjectLostError(f"object {oid:x} is gone: it was freed, or it belongs to a runtime that "
                              "was shut down; keep its ObjectRef alive while you need it")

    def _register(self, fut: Future, n: int, name: str) -> list[ObjectRef]:
        """Refs for a call's results (lock held): the future itself, or one getitem per value."""
        if n == 1:
            oid = self.new_object_id()
            self._futures[oid] = fut
            return [ObjectRef(oid, self)]
        refs = []
        for i in range(n):
            oid = self.new_object_id()
            self._futures[oid] = self.client.submit(operator.getitem, fut, i, pure=False,
                                                    key=f"{name}-{i}-{uuid.uuid4().hex}")
            self._parents[oid] = fut
            refs.append(ObjectRef(oid, self))
        return refs

    @contextlib.contextmanager
    def carrying(self, values: dict[int, Any]) -> Iterator[None]:
        """Inside a task: make the values of refs nested in its arguments gettable by id."""
        with self._lock:
            self._apply_events()
            for oid, value in values.items():
                self._values.setdefault(oid, value)
                self._counts[oid] = self._counts.get(oid, 0) + 1
        try:
            yield
        finally:
            for oid in values:
                self._ref_events.append((-1, oid))

    # -- runtime interface: submission -----------------------------------------------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict) -> list[ObjectRef]:
        """Submit ``fn(*args, **kwargs)`` as a Dask task; returns one ref per declared return value."""
        resources = self._resources(options["num_cpus"], options["num_gpus"], options["resources"],
                                    f"task {name}")
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        fn_future = self._function(fn_id, fn_bytes)
        n = options["num_returns"]
        retry = (options["max_retries"], options["retry_exceptions"]) if options["retry_exceptions"] else None
        spec = _CallSpec(fn_id, name, blob, retry, n)
        with self._lock:
            self._apply_events()
            dep_args = [self._arg_for(oid) for oid in deps]
            carried = {oid: self._arg_for(oid) for oid in contained}
            fut = self.client.submit(_run_task, fn_future, spec, carried, *dep_args, pure=False,
                                     key=f"{name}-{uuid.uuid4().hex}", resources=resources)
            refs = self._register(fut, n, name)
        fire_and_forget(fut)  # as in the local runtime, a task runs even if its refs are dropped
        del keep  # Dask holds the auto-put arguments as dependencies now
        return refs

    def create_actor(self, actor_id: int, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict) -> None:
        """Start a Dask actor holding ``cls(*args, **kwargs)``; named ones are cluster-wide."""
        class_name = options["class_name"]
        resources = self._resources(options["num_cpus"], options["num_gpus"], options["resources"],
                                    f"actor {class_name}")
        actor_name = options.get("name")
        if actor_name is not None and self.lookup("actor", actor_name) is not None:
            raise ValueError(f"an actor named {actor_name!r} already exists; pick another name "
                             f"or reach the existing one with sluice.get_actor({actor_name!r})")
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        cls_future = self._function(cls_id, cls_bytes)
        spec = _CallSpec(cls_id, class_name, blob, None, 1)
        concurrency = options.get("max_concurrency") or 1
        with self._lock:
            self._apply_events()
            dep_args = [self._arg_for(oid) for oid in deps]
            carried = {oid: self._arg_for(oid) for oid in contained}
            fut = self.client.submit(_ActorShell, cls_future, spec, concurrency, carried, *dep_args, actor=True,
                                     pure=False, key=f"{class_name}-{uuid.uuid4().hex}",
                                     resources=resources)
        methods = options.get("_methods", {})
        self.client.publish_dataset(fut, name=ACTOR_DATASET.format(actor_id))
        if actor_name is not None:
            try:
                self.client.publish_dataset((actor_id, class_name, methods, fut),
                                            name=NAMED_DATASET.format(actor_name))
            except KeyError:  # another runtime took the name meanwhile
                self._try_unpublish(ACTOR_DATASET.format(actor_id))
                self.client.cancel([fut], force=True)
                raise ValueError(f"an actor named {actor_name!r} already exists; pick another name "
                                 f"or reach the existing one with sluice.get_actor({actor_name!r})"
                                 ) from None
        with self._lock:
            self._actors[actor_id] = _Actor(fut, class_name, actor_name, methods, owned=True)
            if actor_name is not None:
                self._named[actor_name] = actor_id
        del keep

    def submit_actor_task(self, actor_id: int, method: str, name: str, args: tuple, kwargs: dict,
                          options: dict) -> list[ObjectRef]:
        """Call ``method`` on an actor; calls from this runtime run in the order they were made."""
        n = options["num_returns"]
        self._sync()
        actor = self._actor(actor_id)
        if actor is None or actor.dead is not None:
            return self._failed(n, name, actor.dead if actor is not None else ActorDiedError(
                f"actor {actor_id:x}", "no such actor is alive on this Dask cluster; it was killed, "
                "or every handle to it was dropped"))
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        spec = _CallSpec(0, name, blob, None, n)
        with self._lock:
            self._apply_events()
            dep_args = [self._arg_for(oid) for oid in deps]
            carried = {oid: self._arg_for(oid) for oid in contained}
            seq = actor.next_seq
            actor.next_seq += 1
            key = f"{name}-{uuid.uuid4().hex}"
            fut = self.client.submit(_relay_call, actor.future, self.caller, seq, method, spec, carried,
                                     *dep_args, pure=False, key=key)
            self._inflight[key] = fut
            refs = self._register(fut, n, name)
        fut.add_done_callback(_CallDone(self, actor.future, seq))
        del keep
        return refs

    def submit_actor_chain(self, hops: list, first: Any) -> None:
        """Forwarded actor chains are a local-runtime feature: a Plan makes ordinary calls here."""
        return None

    def _call_done(self, fut: Future, actor_future: Future, seq: int) -> None:
        """A relay ended. If it never reached the actor (a failed argument, a cancel), tell the
        actor to skip its number, or the calls after it would wait for it forever."""
        self._inflight.pop(fut.key, None)
        if fut.status == "finished" or self._closed:
            return
        with contextlib.suppress(Exception):  # the client is closing: nothing waits any more
            fire_and_forget(self.client.submit(_skip_call, actor_future, self.caller, seq, pure=False))

    def _actor(self, actor_id: int) -> _Actor | None:
        actor = self._actors.get(actor_id)
        if actor is None:  # an actor of another runtime (a handle passed into this task)
            fut = self.client.get_dataset(ACTOR_DATASET.format(actor_id), default=None)
            if fut is None:
                return None
            with self._lock:
                actor = self._actors.setdefault(actor_id, _Actor(fut, "", None, {}, owned=False))
        return actor

    def _failed(self, n: int, name: str, err: BaseException) -> list[ObjectRef]:
        """Refs that raise ``err`` at get (a call on a dead actor)."""
        with self._lock:
            self._apply_events()
            refs = []
            for _ in range(n):
                refs += self._register(self.client.submit(_raise, _Literal(err), pure=False,
                                                          key=f"{name}-{uuid.uuid4().hex}"), 1, name)
        return refs

    def put(self, value: Any) -> ObjectRef:
        """Scatter ``value`` to a Dask worker once; pass the ref to many tasks."""
        if isinstance(value, ObjectRef):
            raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself along")
        [fut] = self.client.scatter([value], hash=False)
        with self._lock:
            self._apply_events()
            oid = self.new_object_id()
            self._futures[oid] = fut
            return ObjectRef(oid, self)

    def kill(self, actor_id: int, no_restart: bool = True) -> None:
        """Stop an actor: its queued and later calls raise ``ActorDiedError`` (a running call
        finishes; Dask cannot interrupt it). Dask actors never restart."""
        self._sync()
        actor = self._actor(actor_id)
        if actor is None or actor.dead is not None:
            return
        actor.dead = ActorDiedError(f"actor {actor.class_name or f'{actor_id:x}'}",
                                    "the actor was killed by sluice.kill(); create a new one to go on")
        with self._blocking(), contextlib.suppress(Exception):  # a constructor that failed: dead already
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
        if futs:  # force: the fire-and-forget marker also "wants" the key
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
        values: list = []
        if futs:
            with self._blocking():
                if timeout is not None:
                    try:
                        distributed.wait(futs, timeout=timeout)
                    except TimeoutError:
                        left = sum(not f.done() for f in futs)
                        raise GetTimeoutError(
                            f"get timed out after {timeout}s with {left} of {len(refs)} objects not "
                            "ready; raise the timeout or check the tasks with sluice.wait()") from None
                values = self._gather(futs)
        it = iter(values)
        return [next(it) if isinstance(f, Future) else f.value for f in items]

    def _gather(self, futs: list[Future]) -> list:
        try:
            return self.client.gather(futs)
        except CancelledError as err:
            key = getattr(err, "key", None) or next((f.key for f in futs if f.cancelled()), "?")
            raise TaskCancelledError(f"task {_task_name(key)} was cancelled") from None
        except KilledWorker as err:
            raise WorkerCrashedError(
                f"task {_task_name(getattr(err, 'task', '?'))}: the Dask workers running it died too "
                "often (the cluster's distributed.scheduler.allowed-failures); see the worker logs"
            ) from None

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None) -> list[int]:
        """Ids among ``refs`` that are ready, once ``num_returns`` are or ``timeout`` passes."""
        with self._lock:
            self._apply_events()
            items = {r.id: self._futures.get(r.id) for r in refs}
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._blocking():
            while sum(f is None or f.done() for f in items.values()) < num_returns:
                pending = [f for f in items.values() if f is not None and not f.done()]
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    distributed.wait(pending, timeout=left, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    break
        return [oid for oid, f in items.items() if f is None or f.done()]

    @contextlib.contextmanager
    def _blocking(self) -> Iterator[None]:
        """Inside a Dask task, leave the worker's thread pool while blocked, so the tasks
        waited for can run (nested parallelism never deadlocks the pool)."""
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
    def _function(self, fn_id: int, fn_bytes: bytes) -> Future:
        """The pickled function as Dask data: sent once, fetched once per worker."""
        fut = self._functions.get(fn_id)
        if fut is None:
            key = f"sluice-fn-{fn_id:016x}-{self._token}"
            fut = self._functions.setdefault(fn_id, self.client.scatter({key: fn_bytes})[key])
        return fut

    def load_function(self, fn_id: int, fn_bytes: bytes) -> Any:
        """The function of ``fn_id``, unpickled once per process."""
        fn = self._loaded.get(fn_id)
        if fn is None:
            fn = self._loaded[fn_id] = load_function(fn_bytes)
        return fn

    def _resources(self, num_cpus: float, num_gpus: float, resources: dict | None, what: str
                   ) -> dict | None:
        """The Dask resource restrictions of a demand; raises if no worker could ever meet it.

        With no resources declared by any worker, CPUs are Dask's threads (one task
        each) and num_cpus is ignored. Inside a task CPUs are not reserved: the
        parent, blocked in get, holds its own (as the local runtime lends them).
        """
        key = demand_key(num_cpus, num_gpus, resources)
        if key in self._feasible:
            return self._feasible[key]
        declared = self._declared_resources()
        demand = dict(key)
        if not any(declared) or not any("CPU" in w for w in declared) or not self.is_driver:
            demand.pop("CPU", None)
        if demand and not _fits(demand, declared):
            declared = self._declared_resources()  # workers may have joined since
            if declared and not _fits(demand, declared):
                raise InfeasibleResourceError(f"{what}: {_infeasible_hint(demand, declared)}")
        self._feasible[key] = result = demand or None
        return result

    def _declared_resources(self) -> list[dict]:
        workers = self.client.scheduler_info()["workers"].values()
        return [dict(w.get("resources") or {}) for w in workers]

    def _total_resources(self) -> dict[str, float]:
        workers = list(self.client.scheduler_info()["workers"].values())
        total: dict[str, float] = {"CPU": float(sum(w.get("nthreads", 0) for w in workers)), "GPU": 0.0}
        declared: dict[str, float] = {}
        for w in workers:
            for name, amount in (w.get("resources") or {}).items():
                declared[name] = declared.get(name, 0.0) + float(amount)
        total.update(declared)
        return total

    def _available_resources(self) -> dict[str, float]:
        total = self._total_resources()
        try:
            used = self.client.run_on_scheduler(_used_resources)
        except Exception:  # the scheduler refuses to run functions: report what it has
            return total
        declared_cpu = used.pop("__declared_cpu__", False)
        busy = used.pop("__processing__", 0)
        available = {name: amount - used.get(name, 0.0) for name, amount in total.items()}
        if not declared_cpu:
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
            names = self._unpublish + [ACTOR_DATASET.format(a) for a, actor in self._actors.items()
                                       if actor.owned and actor.dead is None]
            names += [NAMED_DATASET.format(name) for name, a in self._named.items()
                      if self._actors.get(a) is not None and self._actors[a].dead is None]
            self._unpublish = []
            for table in (self._futures, self._values, self._parents, self._functions, self._actors,
                          self._inflight, self._named, self._counts):
                table.clear()
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


# -- code that runs on Dask workers --------------------------------------------------------------

_task_runtime_lock = threading.Lock()


def _task_runtime() -> DaskRuntime:
    """The sluice runtime of this Dask worker process (made on first use, over its client)."""
    rt = context.current()
    if isinstance(rt, DaskRuntime):
        return rt  # an in-process cluster runs its tasks beside the driver's runtime
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


def _task_error(name: str, err: BaseException, kind: type[TaskError] = TaskError) -> BaseException:
    """The error ``get`` raises for a task's exception: the local runtime's, exactly."""
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


def _run_task(fn_bytes: bytes, spec: _CallSpec, carried: dict, *dep_values: Any) -> Any:
    """One sluice task on a Dask worker: exceptions retried as ``retry_exceptions`` says."""
    rt = _task_runtime()
    with rt.carrying({oid: _unwrap(v) for oid, v in carried.items()}):
        try:
            fn = rt.load_function(spec.fn_id, fn_bytes)
            args, kwargs = decode_call(spec.blob, [_unwrap(v) for v in dep_values])
        except Exception as err:
            raise _task_error(spec.name, err) from None
        attempt = 0
        while True:
            try:
                return _check_returns(spec.name, fn(*args, **kwargs), spec.num_returns)
            except Exception as err:
                if spec.retry is not None and attempt < spec.retry[0] and retryable(err, spec.retry[1]):
                    attempt += 1
                    continue
                raise _task_error(spec.name, err) from None


def _raise(err: _Literal) -> None:
    raise err.value


async def _relay_call(actor: Any, caller: str, seq: int, method: str, spec: _CallSpec, carried: dict,
                      *dep_values: Any) -> Any:
    """Forward one actor call, its arguments resolved by Dask, to the actor's shell."""
    carried = {oid: _unwrap(v) for oid, v in carried.items()}
    return await actor.call(caller, seq, method, spec, carried, [_unwrap(v) for v in dep_values])


async def _skip_call(actor: Any, caller: str, seq: int) -> None:
    await actor.skip(caller, seq)


async def _kill_actor(actor: Any, err: _Literal) -> None:
    await actor.kill(err.value)


def _used_resources(dask_scheduler: Any) -> dict:
    """Resources in use across the cluster (runs on the scheduler)."""
    used: dict[str, Any] = {"__processing__": 0, "__declared_cpu__": False}
    for ws in dask_scheduler.workers.values():
        used["__processing__"] += len(ws.processing)
        used["__declared_cpu__"] = used["__declared_cpu__"] or "CPU" in (ws.resources or {})
        for name, amount in (ws.used_resources or {}).items():
            used[name] = used.get(name, 0.0) + amount
    return used


class _ActorShell:
    """The Dask actor behind a sluice actor: the user's object plus call ordering.

    ``call`` runs on the worker's event loop: it waits for the caller's previous
    call to have started, then starts this one on the shell's own threads
    (``max_concurrency`` of them, one by default), so each caller's calls start
    in the order they were made.
    """

    def __init__(self, cls_bytes: bytes, spec: _CallSpec, max_concurrency: int, carried: dict,
                 *dep_values: Any):
        rt = _task_runtime()
        self._class_name = spec.name
        with rt.carrying({oid: _unwrap(v) for oid, v in carried.items()}):
            try:
                cls = rt.load_function(spec.fn_id, cls_bytes)
                args, kwargs = decode_call(spec.blob, [_unwrap(v) for v in dep_values])
                self._instance = cls(*args, **kwargs)
            except Exception as err:
                raise _task_error(f"{spec.name}.__init__", err, ActorDiedError) from None
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"sluice-{spec.name}")
        self._next: dict[str, int] = {}            # caller -> number of its next call to start
        self._skipped: dict[str, set[int]] = {}    # caller -> numbers that will never arrive
        self._waiting: dict[tuple[str, int], asyncio.Future] = {}  # arrived early, waiting their turn
        self._dead: ActorDiedError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # for async methods, made on first use
        self._loop_lock = threading.Lock()

    async def call(self, caller: str, seq: int, method: str, spec: _CallSpec, carried: dict,
                   dep_values: list) -> Any:
        if self._dead is None and seq > self._next.get(caller, 0):
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[(caller, seq)] = waiter
            await waiter
        if self._dead is not None:
            raise self._dead
        if seq < self._next.get(caller, 0):
            raise ActorDiedError(f"actor {self._class_name}", f"call {seq} of {spec.name} reached the "
                                 "actor twice (its relay's worker died); it ran once")
        running = asyncio.get_running_loop().run_in_executor(
            self._pool, self._run, method, spec, carried, dep_values)
        self._advance(caller, seq)
        return await running

    async def skip(self, caller: str, seq: int) -> None:
        """Call ``seq`` of ``caller`` will never arrive (its arguments failed, or it was cancelled)."""
        if seq < self._next.get(caller, 0) or (caller, seq) in self._waiting:
            return  # it arrived: it runs or ran
        if seq == self._next.get(caller, 0):
            self._advance(caller, seq)
        else:
            self._skipped.setdefault(caller, set()).add(seq)

    async def kill(self, err: ActorDiedError) -> None:
        self._dead = err
        self._instance = None
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
                args, kwargs = decode_call(spec.blob, dep_values)
                value = getattr(self._instance, method)(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run_coroutine_threadsafe(_awaited(value), self._event_loop()).result()
                return _check_returns(spec.name, value, spec.num_returns)
            except Exception as err:
                raise _task_error(spec.name, err) from None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop async methods run on: one thread of its own, so state stays on one loop."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, daemon=True,
                                 name=f"sluice-{self._class_name}-loop").start()
            return self._loop


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _task_name(key: Any) -> str:
    """A task's name from its Dask key (``name-<uuid hex>``)."""
    text = key if isinstance(key, str) else str(key)
    head, _, tail = text.rpartition("-")
    return head if head and len(tail) == 32 else text


def _fits(demand: dict[str, float], declared: list[dict]) -> bool:
    """Whether one worker has every resource of ``demand`` (a task runs on one worker)."""
    return any(all(w.get(name, 0.0) >= amount for name, amount in demand.items()) for w in declared)


def _infeasible_hint(demand: dict[str, float], declared: list[dict]) -> str:
    for name, amount in demand.items():
        most = max((w.get(name, 0.0) for w in declared), default=0.0)
        if most >= amount:
            continue
        if not any(declared):
            have = "no Dask worker declares any resources"
        else:
            have = f"the Dask workers have at most {most:g} {name}"
        if name == "GPU":
            return (f"num_gpus={amount:g} requested but {have}; start workers with "
                    f"`dask worker ... --resources GPU=N` or drop the request")
        if name == "CPU":
            return (f"num_cpus={amount:g} requested but {have}; lower num_cpus or start workers with "
                    f"`--resources CPU=N`")
        return (f"resources={{{name!r}: {amount:g}}} requested but {have}; start workers with "
                f"`dask worker ... --resources {name}=N` or drop the request")
    return (f"resources {demand} requested, but no single Dask worker has all of them "
            f"(a task runs on one worker); the workers declare {declared}")
