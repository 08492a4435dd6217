"""The ``dask`` backend: sluice tasks, actors and Plans on a dask.distributed cluster.

``sluice.init(backend="dask", address=...)`` installs a :class:`DaskRuntime`, the
:class:`~sluice.executor.backend.Backend` protocol built on Dask futures. Each
ObjectRef maps to a ``distributed.Future``, dropped (so Dask frees the data)
when the last ref dies. What Dask cannot do raises
:class:`~sluice.exceptions.UnsupportedOnBackendError` (its docstring lists it).

- A task is one Dask task running :func:`~sluice.executor.dask_tasks.run_task`: the function is sent once
  as Dask data and unpickled once per worker process; its exception comes back
  as the ``TaskError``-and-original-type the local runtime raises.
- ``max_retries`` means what it means locally: reruns after the task's worker
  died (Dask reruns such a task up to the scheduler's ``allowed-failures``; a
  task allowed fewer counts its crashes and stops early) and, with
  ``retry_exceptions``, after its exceptions, from one budget.
- A ``scheduling_strategy`` node affinity (the user's, or the soft one a Plan
  sets for a stage it placed) becomes Dask's ``workers=[address]``, with
  ``allow_other_workers=soft``: node ids are worker addresses (:meth:`nodes`).
  A soft one runs on that worker whenever it is alive, elsewhere when it is
  not; a hard one naming no live worker is a ``ValueError`` at once.
- Top-level ObjectRef arguments are Dask dependencies (the task gets values);
  refs nested in arguments reach the task as refs, their values shipped along,
  so ``sluice.get`` on them works inside the task.
- An actor is a Dask actor, an :class:`~sluice.executor.dask_tasks.ActorShell` around the user's object.
  Each call is a relay task that depends on the call's arguments and hands them
  to the shell with a per-caller number; the shell starts each caller's calls
  in that order.
- Inside a task or actor, a worker-side ``DaskRuntime`` over
  ``distributed.get_client()`` serves nested tasks, get, put, wait and actor calls.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import distributed
from distributed import Client, Future, fire_and_forget
from distributed.scheduler import KilledWorker
from distributed.threadpoolexecutor import thread_state as pool_state
from distributed.utils import CancelledError
from distributed.utils import thread_state as task_state

from sluice.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    ObjectLostError,
    TaskCancelledError,
    UnsupportedOnBackendError,
    WorkerCrashedError,
)
from sluice.executor.backend import ActorInfo, ChainHop, ObjectLocation
from sluice.executor.calls import encode_call, load_function
from sluice.executor.counting import HandleCounts, RefCounts
from sluice.executor.dask_cluster import DaskClusterInfo, describe_limit
from sluice.executor.dask_tasks import (
    ActorShell,
    AsIs,
    CallSpec,
    kill_actor,
    raise_error,
    read_only,
    relay_call,
    run_task,
    runs_any,
    skip_call,
    task_name,
    where_held,
)
from sluice.executor.generators import refuse_streaming
from sluice.executor.object_ref import OWNER_SHIFT, ObjectRef

ACTOR_DATASET = "sluice-actor-{:016x}"
"""Dask dataset holding an actor's future, so code in tasks can call the actor by id."""
NAMED_DATASET = "sluice-named-actor-{}"
"""Dataset of a named actor: (actor id, class name, method table, actor future)."""
INLINE_FUNCTION_MAX = 64 << 10
"""Pickled functions up to this size travel inside each task; larger ones are broadcast once."""


@dataclass
class _Actor:
    """What a runtime knows of one actor."""

    future: Future            # resolves to the Dask Actor proxy of the ActorShell
    class_name: str
    name: str | None
    methods: dict
    owned: bool               # created by this runtime: it unpublishes it
    next_seq: int = 0         # number of this runtime's next call (the shell starts them in order)
    dead: ActorDiedError | None = None


def no_namespaces(namespace: str | None, what: str) -> None:
    """Dask keeps no namespaces: refuse a named one rather than ignore it."""
    if namespace:
        raise UnsupportedOnBackendError(
            f"{what} with namespace {namespace!r} on the dask backend: Dask keeps no namespaces "
            "(an actor name is the whole Dask cluster's); drop the namespace, or use the local "
            "or cluster backend")


class DaskRuntime(DaskClusterInfo):
    """A sluice Backend whose tasks, objects and actors live on a dask.distributed cluster.

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
        # Invariant: _futures/_values/_parents hold an oid only while _refs counts it (refs + pins).
        self._refs = RefCounts()
        self._handles = HandleCounts()           # driver handles (a worker-side runtime counts none)
        self._futures: dict[int, Future] = {}    # oid -> future of its value
        self._values: dict[int, Any] = {}        # oid -> value shipped into a running task
        self._parents: dict[int, Future] = {}    # oid -> the call future of a num_returns > 1 result
        self._functions: dict[int, Future] = {}  # fn id -> its cloudpickle bytes, scattered
        self._loaded: dict[int, Any] = {}        # fn id -> the unpickled function (worker side)
        self._actors: dict[int, _Actor] = {}
        self._named: dict[str, int] = {}
        self._unpublish: list[str] = []          # datasets of retired actors, dropped unlocked
        self._inflight: dict[str, Future] = {}   # relay key -> future, held until the call ends
        self._feasible: dict[tuple, dict | None] = {}
        self._cancelled: set[str] = set()        # keys cancelled by sluice.cancel (not lost)
        self._crash_policy: tuple[int, bool] | None = None  # see crash_policy()
        self._closed = False

    # -- runtime interface: refs ---------------------------------------------------------
    def add_local_ref(self, oid: int) -> None:
        self._refs.add(oid)

    def remove_local_ref(self, oid: int) -> None:
        self._refs.remove(oid)

    def actor_handle_event(self, actor_id: int, delta: int) -> None:
        """A driver-side actor handle was made (+1), dropped (-1) or pickled (0); inside a
        task handles are not counted (one arrived pickled: its actor never retires early)."""
        if self.is_driver:
            self._handles.event(actor_id, delta)

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
        for oid, first in self._refs.drain():
            if not first:
                self._futures.pop(oid, None)
                self._values.pop(oid, None)
                self._parents.pop(oid, None)
        for actor_id in self._handles.drain():
            actor = self._actors.get(actor_id)
            if actor is not None and actor.owned and actor.name is None:
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
            return AsIs(self._values[oid])
        if not self.is_driver:
            raise UnsupportedOnBackendError(
                f"object {oid:x}: on the dask backend a task reads only the refs in its own "
                "arguments, not refs kept inside put values or task results; pass the ref as an "
                "argument, or use the local or cluster backend")
        if oid >> OWNER_SHIFT:
            raise UnsupportedOnBackendError(
                f"object {oid:x} was made inside a task, and on the dask backend such a ref cannot "
                "leave its task; return the value instead, or use the local or cluster backend")
        raise ObjectLostError(f"object {oid:x} is gone: it was freed, or it belongs to a runtime that "
                              "was shut down; keep its ObjectRef alive while you need it")

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
                self._refs.pin(oid)
        try:
            yield
        finally:
            for oid in values:
                self._refs.remove(oid)
            with self._lock:  # the task's own refs died with it: free their futures now
                self._apply_events()

    # -- runtime interface: submission -----------------------------------------------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict) -> list[ObjectRef]:
        """Submit ``fn(*args, **kwargs)`` as a Dask task; returns one ref per declared return value."""
        refuse_streaming(options, f"task {name}", "on the Dask backend")
        if options.get("max_calls"):
            raise UnsupportedOnBackendError(
                f"task {name}: max_calls={options['max_calls']} on the dask backend: a Dask worker "
                "runs every task in one long-lived process; drop max_calls, or use the local or "
                "cluster backend")
        resources = self._resources(options, f"task {name}")
        no_runtime_env(options.get("runtime_env"), f"task {name}")
        placed = self._placement(options, f"task {name}")
        retry = self._retry(options, name)
        blob, dep_args, carried, keep = self._encode(name, args, kwargs)
        spec = CallSpec(fn_id, name, blob, retry, options["num_returns"])
        fut = self.client.submit(run_task, self._function(fn_id, fn_bytes), spec, carried, *dep_args,
                                 pure=False, key=self._key(name), resources=resources, **placed)
        fire_and_forget(fut)  # as in the local runtime, a task runs even if its refs are dropped
        del keep  # Dask holds the auto-put arguments as dependencies now
        return self._register(fut, spec.num_returns, name)

    def create_actor(self, actor_id: int, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict) -> None:
        """Start a Dask actor holding ``cls(*args, **kwargs)``; a named one is cluster-wide."""
        class_name, actor_name = options["class_name"], options.get("name")
        restarts = options.get("max_restarts", 0)
        if restarts:
            raise UnsupportedOnBackendError(
                f"actor {class_name}: max_restarts={describe_limit(restarts)} on the dask backend: "
                "Dask actors never restart (an actor dies with its worker); drop max_restarts, or "
                "use the local or cluster backend")
        no_namespaces(options.get("namespace"), f"actor {class_name}: options(namespace=...)")
        resources = self._resources(options, f"actor {class_name}")
        no_runtime_env(options.get("runtime_env"), f"actor {class_name}")
        placed = self._placement(options, f"actor {class_name}")
        taken = ValueError(f"an actor named {actor_name!r} already exists; pick another name "
                           f"or reach the existing one with sluice.get_actor({actor_name!r})")
        if actor_name is not None and self.get_actor(actor_name, "") is not None:
            raise taken
        blob, dep_args, carried, keep = self._encode(name, args, kwargs)
        fut = self.client.submit(ActorShell, self._function(cls_id, cls_bytes),
                                 CallSpec(cls_id, class_name, blob, None, 1),
                                 options.get("max_concurrency") or 1, carried, *dep_args, actor=True,
                                 pure=False, key=self._key(class_name), resources=resources, **placed)
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
        refuse_streaming(options, f"actor method {name}", "on the Dask backend")
        n = options["num_returns"]
        self._sync()
        actor = self._actor(actor_id)
        if actor is None or actor.dead is not None:
            err = actor.dead if actor is not None else ActorDiedError(
                f"actor {actor_id:x}", "no such actor is alive on this Dask cluster: it was killed, or "
                "every handle to it was dropped")
            return self._register(self.client.submit(raise_error, AsIs(err), pure=False,
                                                     key=self._key(name)), n, name)
        blob, dep_args, carried, keep = self._encode(name, args, kwargs)
        with self._lock:  # a number is used only by a submitted relay: no gaps
            seq = actor.next_seq
            fut = self.client.submit(relay_call, actor.future, self.caller, seq, method,
                                     CallSpec(0, name, blob, None, n), carried, *dep_args, pure=False,
                                     key=self._key(name))
            actor.next_seq += 1
        self._inflight[fut.key] = fut  # its done-callback must run even if the caller drops the ref
        fut.add_done_callback(_CallDone(self, actor.future, seq))
        del keep
        return self._register(fut, n, name)

    def submit_actor_chain(self, hops: list[ChainHop], first: Any) -> ObjectRef | None:
        """Never forwarded (Dask actors have no direct channels): a Plan makes ordinary calls."""
        return None

    def _call_done(self, fut: Future, actor_future: Future, seq: int) -> None:
        """A relay ended. If it never reached the actor (an argument failed, it was cancelled),
        the actor must skip its number, or the caller's later calls would wait for it forever."""
        self._inflight.pop(fut.key, None)
        if fut.status == "finished" or self._closed:
            return
        with contextlib.suppress(Exception):  # the client is closing: nothing waits any more
            fire_and_forget(self.client.submit(skip_call, actor_future, self.caller, seq, pure=False))

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
        """Stop an actor: its running, queued and later calls raise ``ActorDiedError`` (a running
        method's thread is abandoned, not interrupted). Dask actors never restart."""
        self._sync()
        actor = self._actor(actor_id)
        if actor is None or actor.dead is not None:
            return
        actor.dead = ActorDiedError(f"actor {actor.class_name or f'{actor_id:x}'}",
                                    "the actor was killed by sluice.kill(); create a new one to go on")
        with self._blocking(), contextlib.suppress(Exception):  # its constructor failed: dead already
            self.client.submit(kill_actor, actor.future, AsIs(actor.dead), pure=False).result()
        with self._lock:
            if actor.name is not None and self._named.get(actor.name) == actor_id:
                del self._named[actor.name]
        self._try_unpublish(ACTOR_DATASET.format(actor_id))
        if actor.name is not None:
            self._try_unpublish(NAMED_DATASET.format(actor.name))

    def cancel(self, ref: ObjectRef, force: bool = False, recursive: bool = True) -> None:
        """Cancel the task computing ``ref``. A running task is abandoned: its thread runs on,
        unseen by Dask. ``force`` on a running task raises UnsupportedOnBackendError: Dask
        could stop it only by restarting its worker, losing every task and object there.
        ``recursive`` changes nothing here: Dask keeps no record of which task submitted
        which, so the tasks a cancelled task submitted run on."""
        with self._lock:
            self._apply_events()
            futs = [f for f in (self._futures.get(ref.id), self._parents.get(ref.id)) if f is not None]
            parent = self._parents.get(ref.id)
            siblings = [self._futures[o] for o, p in self._parents.items()
                        if p is parent and o in self._futures]
        if not futs:
            return
        if force and any(self.client.run(runs_any, [f.key for f in futs]).values()):
            raise UnsupportedOnBackendError(
                f"cancel(force=True) of the running task {task_name(futs[0].key)} on the dask "
                "backend: Dask can stop a running task only by restarting its worker, which loses "
                "every other task and object there; call sluice.cancel(ref) to abandon it (its "
                "thread runs to the end unseen), restart the worker yourself with "
                "distributed.Client.restart_workers, or use the local or cluster backend")
        with self._lock:
            self._cancelled.update(f.key for f in futs + siblings)
        self.client.cancel(futs, force=True)  # force: the fire-and-forget marker wants the key too

    def named_actors(self, namespace: str | None) -> list[dict[str, str]]:
        """The named actors this runtime knows of (names are cluster-wide on Dask: no
        namespaces)."""
        with self._lock:
            return [{"name": name, "namespace": ""} for name, actor_id in self._named.items()
                    if actor_id in self._actors and self._actors[actor_id].dead is None]

    def context_info(self) -> dict[str, Any]:
        """What Dask tells of this process: its worker's address as the node, the runtime's
        id as the job; no task, actor or resource ids (Dask does not keep them)."""
        node = None
        with contextlib.suppress(ImportError, ValueError):
            from distributed import get_worker

            node = get_worker().address
        return {"job_id": self.caller[:8], "namespace": "", "node_id": node,
                "worker_id": self.caller, "task_id": None, "actor_id": None, "actor_name": None,
                "resources": {}, "gpu_ids": [], "placement_group_id": None, "reconstructed": False}

    def get_actor(self, name: str, namespace: str) -> ActorInfo | None:
        """The live actor named ``name`` on the Dask cluster (any runtime's), or None. Dask
        keeps no namespaces: a name is the whole cluster's (a namespace other than ``""``
        raises UnsupportedOnBackendError)."""
        no_namespaces(namespace, f"get_actor({name!r}, namespace=...)")
        with self._lock:
            actor_id = self._named.get(name)
            actor = self._actors.get(actor_id) if actor_id is not None else None
        if actor_id is not None and actor is not None and actor.dead is None:
            return ActorInfo(actor_id, actor.class_name, actor.methods)
        found = self.client.get_dataset(NAMED_DATASET.format(name), default=None)
        if found is None:
            return None
        actor_id, class_name, methods, fut = found
        with self._lock:
            self._actors.setdefault(actor_id, _Actor(fut, class_name, name, methods, owned=False))
        return ActorInfo(actor_id, class_name, methods)

    def object_locations(self, ids: Sequence[int]) -> list[ObjectLocation]:
        """The Dask workers holding each object, and its size as Dask measured it. A value
        handed into this task (a ref nested in its arguments) has no known location."""
        with self._lock:
            self._apply_events()
            futs = {oid: self._futures.get(oid) for oid in ids}
        keys = [f.key for f in futs.values() if f is not None]
        # One quick round trip: it stays in the worker's thread pool (leaving it, a task could
        # have to wait for its slot behind the very tasks it is about to release).
        held = self.client.run_on_scheduler(where_held, keys) if keys else {}
        out = []
        for oid, fut in futs.items():
            holders, size = held.get(fut.key, ((), -1)) if fut is not None else ((), -1)
            out.append(ObjectLocation(oid, tuple(holders), size if size >= 0 else None))  # -1: unknown
        return out

    # -- runtime interface: blocking ---------------------------------------------------------
    def get(self, refs: list[ObjectRef], timeout: float | None) -> list:
        """Values of ``refs``; a task's exception re-raises as TaskError and its own type."""
        with self._lock:
            self._apply_events()
            items = [self._arg_for(r.id) for r in refs]
        futs = [f for f in items if isinstance(f, Future)]
        values = iter(self._gather(futs, timeout) if futs else ())
        return [read_only(next(values) if isinstance(f, Future) else f.value) for f in items]

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
                    raise TaskCancelledError(f"task {task_name(key)} was cancelled") from None
                raise ObjectLostError(  # Dask cancels what depends on lost scattered data
                    f"task {task_name(key)} cannot run: an object it needs was lost with a Dask worker "
                    "(put values cannot be recomputed); put it again and resubmit") from None
            except KilledWorker as err:
                raise WorkerCrashedError(
                    f"task {task_name(getattr(err, 'task', '?'))}: the Dask workers running it died too "
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

    # -- functions ---------------------------------------------------------------
    def _function(self, fn_id: int, fn_bytes: bytes) -> Any:
        """The pickled function as a task gets it (each worker unpickles it once).

        A small one travels inside each task. A large one is put on every worker
        once: as a scattered dependency on one worker only, it would draw every
        task to that worker, and die with it.
        """
        if len(fn_bytes) <= INLINE_FUNCTION_MAX:
            return AsIs(fn_bytes)
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
            escaped = [actor.future for a, actor in owned.items() if a in self._handles.escaped]
            for table in (self._futures, self._values, self._parents, self._functions, self._actors,
                          self._inflight, self._named, self._refs.counts, self._cancelled):
                table.clear()
        stopped = AsIs(ActorDiedError("actor", "its sluice runtime was shut down"))
        for fut in escaped:
            with contextlib.suppress(Exception):
                fire_and_forget(self.client.submit(kill_actor, fut, stopped, pure=False))
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


def no_runtime_env(runtime_env: Any, what: str) -> None:
    """Refuse a ``runtime_env`` on the dask backend: Dask runs tasks as threads of long-lived
    workers, which share one process environment, directory and ``sys.path``."""
    if runtime_env:
        raise UnsupportedOnBackendError(
            f"{what}: runtime_env={runtime_env!r} on the dask backend: Dask workers run tasks as "
            "threads of one process, which cannot each have their own environment variables, "
            "directory or sys.path; set them where the Dask workers start (dask worker "
            "--preload, their environment), or use the local or cluster backend")
