"""The one interface every sluice backend implements, and the plain records it returns.

The eager API (``sluice.get``, ``.remote()``, ...), the DSL and the Plan runner
reach the current backend through :func:`sluice.executor.api.runtime` and call
only what :class:`Backend` names. Four classes implement it:

- :class:`~sluice.executor.runtime.Runtime`: the embedded local runtime
  (``sluice.init()``), scheduler and workers beside the driver;
- :class:`~sluice.executor.worker_api.WorkerAPI`: the same API inside a task or
  actor (nested calls), each call a message to the driver;
- :class:`~sluice.executor.cluster.client.ClusterClient`: a driver connected
  to a sluice cluster (``sluice.init(address="sluice://...")``);
- :class:`~sluice.executor.dask_backend.DaskRuntime`: tasks and actors on a
  dask.distributed cluster (``sluice.init(backend="dask")``); what Dask cannot
  do raises :class:`~sluice.exceptions.UnsupportedOnBackendError`.

A capability some backend lacks is part of a member's contract (e.g.
:meth:`Backend.submit_actor_chain` returns None), never something callers probe
for with ``getattr``/``hasattr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sluice.executor.resources import ResourceKey

if TYPE_CHECKING:
    from sluice.executor.object_ref import ObjectRef

ObjectID = int
"""An object's id: the owner process index in the high bits, a counter below."""
ActorID = int
"""An actor's id, unique in its backend."""
NodeID = str
"""A node's name, as the locality pass and ``Stage.placement`` use it."""
ChainHop = tuple[ActorID, str, str, bytes]
"""One call of an actor chain: ``(actor id, method, name, packed arguments)``."""

LOCAL_NODE: NodeID = "local"
"""The single node of the embedded local runtime (the placement every stage gets there)."""


@dataclass(frozen=True)
class NodeInfo:
    """One node (a machine's daemon, a Dask worker, or the local runtime itself).

    ``store_capacity``: bytes its object store may hold (0 where unknown);
    ``store_used``: bytes it holds in memory now, ``objects_spilled``: objects it has
    spilled to disk so far, ``objects_pulled``/``bytes_pulled``: objects (and their bytes)
    it has pulled from other nodes so far (0 where unknown).
    """

    node_id: NodeID
    address: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)
    store_capacity: int = 0
    store_used: int = 0
    objects_spilled: int = 0
    objects_pulled: int = 0
    bytes_pulled: int = 0


@dataclass(frozen=True)
class ObjectLocation:
    """Where an object's value lives and how big it is.

    ``node_ids``: the nodes whose store holds a copy. Empty while the object is
    still being computed, once it is freed, and for small values that travel
    inside messages on the local and cluster backends (no store holds them; every
    node reads them at no transfer cost). ``size``: its serialized bytes, or None
    where the backend does not know it (yet).
    """

    object_id: ObjectID
    node_ids: tuple[NodeID, ...] = ()
    size: int | None = None


@dataclass(frozen=True)
class ActorInfo:
    """A live actor found by name: enough to build its :class:`~sluice.ActorHandle`."""

    actor_id: ActorID
    class_name: str
    methods: dict[str, dict] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the API, the DSL and the Plan runner need of a runtime. See the module docstring.

    Options dicts are the normalized ones of :mod:`sluice.dsl.options` (every key
    present). Every member may be called from any thread of the process.
    """

    @property
    def is_driver(self) -> bool:
        """True in the process that started the backend (``sluice.init``); False inside a
        task or actor. Only a driver counts actor handles and may be shut down."""
        ...

    # -- ids and reference counting -------------------------------------------------------
    def new_object_id(self) -> ObjectID:
        """A fresh object id, unique across every process of this backend."""
        ...

    def new_actor_id(self) -> ActorID:
        """A fresh actor id, for :meth:`create_actor`."""
        ...

    def add_local_ref(self, oid: ObjectID) -> None:
        """An ObjectRef to ``oid`` was made in this process. Called from ``ObjectRef.__init__``
        in any thread: it only queues the event, never blocks or takes a lock."""
        ...

    def remove_local_ref(self, oid: ObjectID) -> None:
        """An ObjectRef to ``oid`` died (``__del__``, any thread, even inside garbage
        collection): only queues the event. When no ref in any process and no pending task
        needs the object any more, the backend frees it."""
        ...

    def actor_handle_event(self, actor_id: ActorID, delta: int) -> None:
        """A handle to ``actor_id`` was made (+1), dropped (-1) or pickled (0). A driver
        stops an unnamed actor once its last handle is gone unless one was pickled; a
        backend that does not count handles in this process ignores the event. Queues only."""
        ...

    # -- submission ---------------------------------------------------------------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict[str, Any]) -> list[ObjectRef]:
        """Run ``fn(*args, **kwargs)`` (``fn_bytes`` from :func:`~sluice.executor.calls.dumps_function`,
        ``fn_id`` its content id) as a task; one ref per ``options["num_returns"]`` at once.

        Top-level ObjectRef arguments reach the task as values, nested ones as refs.
        ``max_retries`` counts reruns after the task's worker died, and after its
        exceptions when ``retry_exceptions`` covers them. An infeasible resource demand
        raises :class:`~sluice.exceptions.InfeasibleResourceError` here.
        """
        ...

    def create_actor(self, actor_id: ActorID, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict[str, Any]) -> None:
        """Start actor ``actor_id`` running ``cls(*args, **kwargs)``; returns at once.

        ``options`` are the actor class's plus ``class_name`` and ``_methods`` (the method
        table). A ``name`` makes it findable with :meth:`get_actor`; a name already taken
        raises ValueError.
        """
        ...

    def submit_actor_task(self, actor_id: ActorID, method: str, name: str, args: tuple, kwargs: dict,
                          options: dict[str, Any]) -> list[ObjectRef]:
        """Call ``method`` on the actor; one ref per ``options["num_returns"]``. The calls one
        caller makes on one actor start in the order they were made."""
        ...

    def submit_actor_chain(self, hops: list[ChainHop], first: Any) -> ObjectRef | None:
        """Run a chain of actor calls, each fed the previous call's result, actor to actor.

        ``hops`` are ``(actor id, method, name, args blob)`` with the arguments packed by
        :func:`sluice.executor.chains.pack_hop_args`; ``first`` (a value or a ref) feeds the
        first hop. Returns the last call's ref, or None when the chain cannot be forwarded
        now (an actor not ready, too many chains in flight) or ever (a backend without
        forwarding): the caller then makes the same calls with :meth:`submit_actor_task`,
        with the same results.
        """
        ...

    def check_feasible(self, demand: ResourceKey, what: str) -> None:
        """Raise :class:`~sluice.exceptions.InfeasibleResourceError` (naming ``what``) when no
        node could ever meet ``demand``; a demand that has to wait for free resources passes."""
        ...

    # -- objects ------------------------------------------------------------------------
    def put(self, value: Any) -> ObjectRef:
        """Store ``value`` once; its ref can be passed to many tasks without copies.
        Putting an ObjectRef is a TypeError."""
        ...

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        """The values of ``refs``, in order, once all are ready. A task's exception re-raises
        as a :class:`~sluice.exceptions.TaskError` that is also of its original type;
        ``timeout`` (seconds, None for ever) raises :class:`~sluice.exceptions.GetTimeoutError`."""
        ...

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None) -> list[ObjectID]:
        """The ids among ``refs`` that are ready (a value or an error) once at least
        ``num_returns`` are or ``timeout`` passes; may hold more than ``num_returns``."""
        ...

    def cancel(self, ref: ObjectRef, force: bool = False, recursive: bool = True) -> None:
        """Cancel the task computing ``ref``: its ``get`` raises
        :class:`~sluice.exceptions.TaskCancelledError`. A task not started never runs; a
        running one is abandoned, or with ``force`` its worker process is killed.
        ``recursive``: the unfinished tasks it submitted (and theirs) are cancelled too."""
        ...

    def kill(self, actor_id: ActorID, no_restart: bool = True) -> None:
        """Stop the actor now: its pending and later calls raise
        :class:`~sluice.exceptions.ActorDiedError`."""
        ...

    def object_locations(self, ids: Sequence[ObjectID]) -> list[ObjectLocation]:
        """One :class:`ObjectLocation` per id, in order: which nodes hold it, and its size."""
        ...

    # -- the cluster --------------------------------------------------------------------
    def get_actor(self, name: str, namespace: str) -> ActorInfo | None:
        """The live actor created with ``name`` in ``namespace``, or None."""
        ...

    def named_actors(self, namespace: str | None) -> list[dict[str, str]]:
        """The live named actors (``{"name", "namespace"}`` each), of ``namespace`` or, with
        None, of every namespace."""
        ...

    def context_info(self) -> dict[str, Any]:
        """This process's runtime context as a plain dict (see
        :func:`sluice.executor.lookups.context_of`): its job and namespace, node, worker, and
        the task or actor it runs now."""
        ...

    def cluster_resources(self) -> dict[str, float]:
        """Total resources of the live nodes (``CPU``, ``GPU`` and custom ones)."""
        ...

    def available_resources(self) -> dict[str, float]:
        """Resources not held by running tasks and actors right now."""
        ...

    def nodes(self) -> list[NodeInfo]:
        """The nodes of the backend: one for the local runtime, each node daemon of a
        cluster (dead ones with ``alive`` False), each worker of a Dask cluster."""
        ...

    def store_capacity(self) -> int:
        """Bytes the object stores of the live nodes may hold in memory, together."""
        ...

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        """The workers' log files (``filename`` None: a list of dicts with ``filename``,
        ``pid``, ``worker_index``, ``stream``, ``size``), or the lines of one (the last
        ``tail``; -1: all); ``ValueError`` naming an unknown file."""
        ...

    def record_metric(self, update: tuple) -> None:
        """Record one user-metric update (``sluice.util.metrics``; its shape is
        :data:`sluice.executor.metrics_table.Update`) where the driver's table holds it."""
        ...

    def state(self, kind: str) -> list[dict[str, Any]]:
        """Every row of state table ``kind`` (tasks, actors, objects, workers, nodes, jobs)
        as plain dicts with Ray's column names, oldest first (``sluice.util.state``)."""
        ...

    def shutdown(self) -> None:
        """Release what this backend holds (processes, memory, connections); idempotent.
        Inside a task or actor it does nothing: the driver owns the worker."""
        ...
