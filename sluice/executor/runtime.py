"""The embedded local runtime: what ``sluice.init()`` starts in the driver.

It owns the scheduler, the I/O thread, the shared-memory store and the worker
processes, and implements the :class:`~sluice.executor.backend.Backend` protocol
(``submit_task``, ``create_actor``, ``get``, ...) on one node: its scheduler is
built with the one-machine placement and the store's object locations
(:class:`~sluice.executor.placement.LocalPlacement`,
:class:`~sluice.executor.placement.StoreLocations`). Inside workers the same
protocol is implemented by :class:`~sluice.executor.worker_api.WorkerAPI`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from sluice.exceptions import GetTimeoutError, ObjectLostError, TaskError
from sluice.executor import logs, lookups
from sluice.executor import protocol as P
from sluice.executor import state
from sluice.executor.backend import ActorInfo, NodeInfo, ObjectLocation
from sluice.executor.calls import encode_call
from sluice.executor.chain_driver import chain_input
from sluice.executor.io import IOThread
from sluice.executor.object_ref import ObjectRef
from sluice.executor.placement import LocalPlacement, StoreLocations
from sluice.executor.process import start_template
from sluice.executor.records import PENDING, ActorRecord, JobInfo, TaskRecord, anonymous_namespace, job_id_hex
from sluice.executor.resources import NodeResources, ResourceKey, with_default_memory
from sluice.executor.runtime_env import RuntimeEnvs
from sluice.executor.scheduler import Scheduler
from sluice.executor.strategies import options_demand, placed_strategy
from sluice.store import serialization, shm
from sluice.store.arena import default_arena_bytes
from sluice.store.object_store import ObjectStore

DEFAULT_STORE_FRACTION = 0.3
SLOT_WAIT_SECONDS = 0.01
MAX_CHAINS_IN_FLIGHT = 8
"""Forwarded actor chains running at once: each has one datagram in flight, and a Unix
datagram socket queues 10 by default (past that, senders wait); past the cap a Plan
makes ordinary calls through the driver."""


def default_store_memory() -> int:
    """30% of /dev/shm (as Ray sizes its store), at least 64 MB."""
    try:
        st = os.statvfs("/dev/shm")
        return max(64 << 20, int(st.f_bsize * st.f_blocks * DEFAULT_STORE_FRACTION))
    except OSError:
        return 2 << 30


class Runtime:
    """A running local sluice: scheduler + worker pool + object store, as a
    :class:`~sluice.executor.backend.Backend` of one node."""

    is_driver = True

    def __init__(self, num_cpus: float | None = None, num_gpus: float | None = None,
                 resources: dict[str, float] | None = None, object_store_memory: int | None = None,
                 spill_dir: str | None = None, namespace: str | None = None,
                 runtime_env: dict[str, Any] | None = None, log_to_driver: bool = True):
        envs = RuntimeEnvs(runtime_env)  # a bad job environment fails here, before anything starts
        job_env = envs.resolve(None)
        shm.cleanup_stale_sessions()
        cleanup_stale_spill_dirs()
        self.session = shm.new_session_id()
        logs.cleanup_old_logs()
        self.log_dir = logs.log_dir(self.session)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Workers' output shown here as they write it (log_to_driver=False: files only).
        self.printer = logs.ConsolePrinter() if log_to_driver else None
        self.log_monitor = (logs.LogMonitor(self.log_dir, self.printer,
                                            tick=self.printer.flush_expired)
                            if self.printer is not None else None)
        cpus = float(num_cpus if num_cpus is not None else (os.cpu_count() or 1))
        gpus = float(num_gpus if num_gpus is not None else detect_gpus())
        total = with_default_memory({"CPU": cpus, "GPU": gpus, **(resources or {})})
        for name, amount in total.items():
            if amount < 0:
                raise ValueError(f"init: resource {name!r}={amount} must not be negative")
        self.resources = NodeResources(total)
        self.template = start_template()  # comes up while the store is made
        self._store_capacity = int(object_store_memory or default_store_memory())
        self._own_spill_dir = spill_dir is None
        self.spill_dir = spill_dir or tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{self.session}-")
        self.store = ObjectStore(self.session, self._store_capacity, self.spill_dir,
                                 default_arena_bytes(self._store_capacity))
        self.io = IOThread()
        self.scheduler = Scheduler(self.session, self.resources,
                                   LocalPlacement(self.session, self.resources, self._store_capacity,
                                                  self.template, self.store),
                                   StoreLocations(self.store), self.io, envs=envs)
        self.actors = self.scheduler.actor_manager
        self.scheduler.driver_job = JobInfo(job_id_hex(1), namespace or anonymous_namespace())
        self.ids = itertools.count(1)
        self.io.start(self.scheduler)
        with self.scheduler.locked():
            for _ in range(max(1, int(cpus))):
                self.scheduler.start_worker(None, job_env)  # the one node
        self.store.wait_for_arena()  # faulted in while the workers start
        self.closed = False

    # -- runtime interface: refs ---------------------------------------------------------
    def add_local_ref(self, oid: int) -> None:
        self.scheduler.ref_events.append((1, oid))

    def remove_local_ref(self, oid: int) -> None:
        self.scheduler.ref_events.append((-1, oid))

    def actor_handle_event(self, actor_id: int, delta: int) -> None:
        """A driver-side actor handle was made (+1), dropped (-1) or pickled (0)."""
        self.actors.handle_counts.event(actor_id, delta)

    def new_object_id(self) -> int:
        return next(self.ids)  # owner index 0: the driver

    # -- runtime interface: submission -----------------------------------------------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict) -> list[ObjectRef]:
        """Submit ``fn(*args, **kwargs)``; returns one ref per declared return value."""
        s = self.scheduler
        if options.get("_plain") and s.envs.job is None:
            # The common task (no strategy, environment, stream or max_calls): the short path.
            key = options["_key"]
            if key not in s.feasible:
                s.check_task(key, None, f"task {name}")
            blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
            with s.locked():
                s.apply_ref_events()
                if fn_id not in s.functions:
                    s.functions[fn_id] = fn_bytes
                return_ids, refs = self._new_refs(options["num_returns"])
                s.submit(TaskRecord(next(s.task_ids), fn_id, name, blob, deps, contained,
                                    return_ids, key, options["max_retries"],
                                    options["retry_exceptions"], keep))
                s.dispatch()
            return refs
        key = options_demand(options, name)
        strategy = options.get("scheduling_strategy")
        if strategy is not None or key not in s.feasible:
            s.check_task(key, strategy, f"task {name}")
        env = env_error = None
        if options.get("runtime_env") is not None or s.envs.job is not None:
            env, env_error = s.envs.for_options(options)
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        with s.locked():
            s.apply_ref_events()
            if fn_id not in s.functions:
                s.functions[fn_id] = fn_bytes
            n = options["num_returns"]
            streaming = n == "streaming"
            return_ids, refs = self._new_refs(1 if streaming else n)
            placed = strategy if strategy is None else placed_strategy(strategy)
            task = TaskRecord(next(s.task_ids), fn_id, name, blob, deps, contained, return_ids,
                              key, options["max_retries"], options["retry_exceptions"], keep, placed)
            if placed is not strategy:
                task.group = strategy
            task.max_calls = options.get("max_calls", 0)
            if streaming:  # before a refusal, so the generator raises its error
                s.open_stream(task, options.get("_generator_backpressure_num_objects"))
            if env_error is not None:
                s.refuse(task, serialization.dumps(env_error))
                return refs
            if env is not None:
                task.set_env(env)
            s.submit(task)
            if streaming:
                s.watch_stream_end(task)
            s.dispatch()
        return refs

    def new_actor_id(self) -> int:
        return next(self.ids)

    def create_actor(self, actor_id: int, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict) -> None:
        """Start an actor: a dedicated worker process running ``cls(*args, **kwargs)``."""
        s = self.scheduler
        key = options_demand(options, name)
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        actor = ActorRecord(actor_id, options["class_name"], cls_id, cls_bytes, blob, deps, contained,
                            options, key, keep)
        self.actors.check_feasible(actor)
        actor.env, env_error = s.envs.for_options(options)
        with s.locked():
            s.apply_ref_events()
            if env_error is not None:  # its calls fail with it
                s.actors[actor_id] = actor
                s.hold(actor.deps)  # as create() would: mark_dead lets them go
                s.hold(actor.contained)
                self.actors.mark_dead(actor, serialization.dumps(env_error))
                return
            self.actors.create(actor)

    def submit_actor_task(self, actor_id: int, method: str, name: str, args: tuple, kwargs: dict,
                          options: dict) -> list[ObjectRef]:
        """Call ``method`` on an actor; calls run in the order they were made."""
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        s = self.scheduler
        with s.locked():
            s.apply_ref_events()
            n = options["num_returns"]
            if n == "streaming":
                return_ids, refs = self._new_refs(1)
                self.actors.call_method(actor_id, method, name, blob, deps, contained, return_ids,
                                        keep, (options.get("_generator_backpressure_num_objects"), None))
            else:
                return_ids, refs = self._new_refs(n)
                self.actors.call_method(actor_id, method, name, blob, deps, contained, return_ids, keep)
        return refs

    def _new_refs(self, n: int) -> tuple[list[int], list[ObjectRef]]:
        """Entries and counted refs for a call's results, before the call can fail or finish."""
        s = self.scheduler
        if n == 1:  # the common case, without the loops
            oid = next(self.ids)
            s.new_entry(oid, None)
            ref = ObjectRef(oid, self)
            s.apply_ref_events()
            return [oid], [ref]
        ids = [next(self.ids) for _ in range(n)]
        for oid in ids:
            s.new_entry(oid, None)
        refs = [ObjectRef(oid, self) for oid in ids]
        s.apply_ref_events()
        return ids, refs

    def submit_actor_chain(self, hops: list[tuple[int, str, str, bytes]], first: Any
                           ) -> ObjectRef | None:
        """Run a chain of actor calls, each fed the previous result, actor to actor.

        ``hops`` are ``(actor_id, method, name, args_blob)`` with the arguments
        packed by :func:`sluice.executor.chains.pack_hop_args`; ``first`` feeds the
        first hop. Returns None when the chain cannot be forwarded now (the caller
        then makes ordinary calls). See executor/chains.py and chain_driver.py.
        """
        s = self.scheduler
        if s.chains_in_flight >= MAX_CHAINS_IN_FLIGHT:
            return None
        first_ref, first_spec = chain_input(first, self.put)
        with s.locked():
            prepared = self.actors.chains.prepare(hops)
            if prepared is None:
                return None
            setup, overrides = prepared
            s.chains_in_flight += 1
            return_ids, refs = self._new_refs(1)
            deps, keep = ([first_ref.id], [first_ref]) if first_ref is not None else ([], [])
            task = TaskRecord(next(s.task_ids), 0, hops[-1][2], b"", deps, (), return_ids,
                              (), 0, False, keep)
            task.method = "__chain__"
            task.chain = (setup.chain_id, overrides, first_spec)
            task.chain_actors = setup.actor_ids
            task.actor = s.actors[hops[0][0]]
            self.actors.call(task)
        return refs[0]

    def put(self, value: Any) -> ObjectRef:
        """Store ``value``; small values stay in driver memory, large ones in shared memory."""
        if isinstance(value, ObjectRef):
            raise TypeError("put() of an ObjectRef is not allowed; pass the ref itself along")
        sobj = serialization.serialize(value)
        s = self.scheduler
        if sobj.nbytes > P.INLINE_MAX:
            self._await_free_slot(sobj.nbytes)
        with s.locked():
            oid = next(self.ids)
            s.new_entry(oid, None)
            ref = ObjectRef(oid, self)
            s.apply_ref_events()  # count the new ref before the value lands
            if sobj.nbytes <= P.INLINE_MAX:
                s.add_object(oid, (P.DEP_INLINE, serialization.to_bytes(sobj)), sobj.contained_ids)
            else:
                self.store.put(oid, sobj)
                s.add_object(oid, (P.DEP_SHM, sobj.nbytes), sobj.contained_ids)
        return ref

    def _await_free_slot(self, nbytes: int) -> None:
        """If a slot of this size is being released (its last ref just died), give the
        workers' acknowledgements a few milliseconds: overwriting a mapped slot costs
        ~18 ms for 200 MB where a fresh segment costs ~100 ms."""
        s = self.scheduler
        with s.locked():
            s.apply_ref_events()
            if not self.store.slot_coming(nbytes):
                return
            s.slot_released.clear()
            s.flush_all()
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        while time.monotonic() < deadline:
            s.slot_released.wait(max(0.0, deadline - time.monotonic()))
            with s.locked():
                if not self.store.slot_coming(nbytes):
                    return
                s.slot_released.clear()

    def kill(self, actor_id: int, no_restart: bool = True) -> None:
        with self.scheduler.locked():
            self.actors.kill(actor_id, no_restart)

    def cancel(self, ref: ObjectRef, force: bool = False, recursive: bool = True) -> None:
        with self.scheduler.locked():
            self.scheduler.cancel(ref.id, force, recursive)
            self.scheduler.flush_all()

    def check_feasible(self, demand: ResourceKey, what: str) -> None:
        """Raise InfeasibleResourceError when this node could never meet ``demand``."""
        self.scheduler.check_task(demand, None, what)

    # -- runtime interface: placement groups ----------------------------------------------------
    def placement_group_op(self, op: str, arg: Any) -> Any:
        """Create, remove, look up or list placement groups (see executor/placement_groups.py)."""
        s = self.scheduler
        with s.locked():
            s.apply_ref_events()
            out = s.pgs.handle(op, arg)
            s.flush_all()
        return out

    def placement_group_ready(self, group_id: str) -> ObjectRef:
        """A ref that resolves to the group once all its bundles are reserved."""
        s = self.scheduler
        with s.locked():
            ids, refs = self._new_refs(1)
            s.pgs.watch(group_id, ids[0])
        return refs[0]

    # -- runtime interface: the node and its objects -------------------------------------------
    def get_actor(self, name: str, namespace: str) -> ActorInfo | None:
        with self.scheduler.locked():
            return self.actors.find_named(name, namespace)

    def named_actors(self, namespace: str | None) -> list[dict[str, str]]:
        with self.scheduler.locked():
            return self.actors.list_named(namespace)

    def context_info(self) -> dict[str, Any]:
        """The driver's runtime context: its job, its node, no task or actor."""
        with self.scheduler.locked():
            return lookups.context_of(self.scheduler, None, None)

    def cluster_resources(self) -> dict[str, float]:
        with self.scheduler.locked():
            return dict(self.resources.total)

    def available_resources(self) -> dict[str, float]:
        with self.scheduler.locked():
            return dict(self.resources.available)

    def nodes(self) -> list[NodeInfo]:
        """One node, :data:`~sluice.executor.backend.LOCAL_NODE`."""
        with self.scheduler.locked():
            return lookups.nodes(self.scheduler)

    def object_locations(self, ids: Sequence[int]) -> list[ObjectLocation]:
        with self.scheduler.locked():
            return lookups.object_locations(self.scheduler, ids)

    def store_capacity(self) -> int:
        with self.scheduler.locked():
            return lookups.store_capacity(self.scheduler)

    def state(self, kind: str) -> list[dict[str, Any]]:
        with self.scheduler.locked():
            return state.rows(self.scheduler, kind)

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        return lookups.worker_logs(self.session, filename, tail)

    def record_metric(self, update: tuple) -> None:
        self.scheduler.metrics.apply([update])

    # -- runtime interface: blocking ---------------------------------------------------------
    def get(self, refs: list[ObjectRef], timeout: float | None) -> list:
        """Values of ``refs`` (zero-copy views for arrays and tables); raises task errors."""
        ids = [r.id for r in refs]
        s = self.scheduler
        if len(ids) == 1:  # one ref already there (a generator's item, say): one locked visit
            with s.locked():
                s.apply_ref_events()
                entry = s.objects.get(ids[0])
                spec = self.read_spec(ids[0]) if entry is not None and entry.state != PENDING \
                    else None
            if spec is not None:
                return [self.materialize(spec)]
        event = threading.Event()
        with s.locked():
            s.apply_ref_events()
            s.flush_all()
            waiter = s.waiter_for(ids, len(ids), event)
        if waiter is not None and not event.wait(timeout):
            with s.locked():
                s.drop_waiter(ids, waiter)
            raise GetTimeoutError(
                f"get timed out after {timeout}s with {waiter.remaining} of {len(ids)} objects "
                f"not ready; raise the timeout or check the tasks with sluice.wait()")
        with s.locked():
            specs = [self.read_spec(oid) for oid in ids]
        return [self.materialize(spec) for spec in specs]

    def read_spec(self, oid: int) -> tuple:
        entry = self.scheduler.objects.get(oid)
        if entry is None:
            raise ObjectLostError(f"object {oid:x} is gone: it was freed, or it belongs to a runtime "
                                  "that was shut down; keep its ObjectRef alive while you need it")
        if entry.state == PENDING:
            raise ObjectLostError(f"object {oid:x} was lost before it was computed (its worker died)")
        spec = entry.spec
        if spec[0] == P.DEP_SHM:
            self.store.ensure_local(oid)
            return ("value", self.store.get(oid))
        return spec

    def materialize(self, spec: tuple) -> Any:
        kind, payload = spec
        if kind == P.DEP_INLINE:
            return serialization.loads(payload)
        if kind == "value":
            return payload
        err = serialization.loads(payload)
        if isinstance(err, TaskError):
            raise err.as_instanceof_cause()
        raise err

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None) -> list[int]:
        """Ids among ``refs`` that are ready, once ``num_returns`` are or ``timeout`` passes."""
        ids = [r.id for r in refs]
        s = self.scheduler
        event = threading.Event()
        with s.locked():
            s.apply_ref_events()
            s.flush_all()
            waiter = s.waiter_for(ids, num_returns, event)
        if waiter is not None:
            event.wait(timeout)
            with s.locked():
                s.drop_waiter(ids, waiter)
        with s.locked():
            return [oid for oid in ids
                    if oid not in s.objects or s.objects[oid].state != PENDING]

    # -- streaming generators (executor/generators.py) ----------------------------------------
    def stream_next(self, gid: int, timeout: float | None) -> ObjectRef | None:
        """The next item's ref of streaming call ``gid`` once it arrives; None at the end."""
        s = self.scheduler
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with s.locked():
                while s.streams_closing:
                    s.close_stream(s.streams_closing.pop())
                oid, ended = s.take_stream_item(gid)
                if oid is not None:
                    ref = ObjectRef(oid, self)
                    if oid != gid:
                        s.ref_events.append((-1, oid))  # the stream's hold, after the new ref
                    s.apply_ref_events()
                    return ref
                if ended:
                    return None
                s.apply_ref_events()
                s.flush_all()  # nothing there yet: send what is batched before waiting
                event = s.streams[gid].event
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 or not event.wait(left):
                raise GetTimeoutError(f"no item of the generator came within {timeout}s; "
                                      "raise the timeout, or wait([gen]) for it")

    def stream_ready(self, gid: int) -> bool:
        """Whether the next item (or the end) of streaming call ``gid`` is there."""
        with self.scheduler.locked():
            return self.scheduler.stream_ready(gid)

    def stream_finished(self, gid: int) -> bool:
        """Whether streaming call ``gid`` ended and its every item (and error) was taken."""
        with self.scheduler.locked():
            return self.scheduler.stream_finished(gid)

    def stream_close(self, gid: int) -> None:
        """The consumer dropped its generator: free its unconsumed items."""
        if self.closed:
            return
        s = self.scheduler
        if s.lock._is_owned():  # collected inside a locked section: close it at the next chance
            s.streams_closing.append(gid)
            return
        with s.locked():
            s.close_stream(gid)
            s.apply_ref_events()

    # -- lifecycle ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every worker and actor process and remove every shared-memory file."""
        if self.closed:
            return
        self.closed = True
        s = self.scheduler
        with s.locked():
            s.closed = True
            procs = []
            for w in list(s.all_workers()):
                w.out.append((P.SHUTDOWN,))
                s.send(w)
                procs.append(w)
            procs.extend(s.retired)  # told to stop already; collect them too
        self.io.stop()
        self.actors.chains.close()
        deadline = time.monotonic() + 2.0
        for w in procs:
            try:
                w.proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except Exception:
                w.proc.kill()
                w.proc.wait()
            try:
                w.conn.close()
            except OSError:
                pass
        if self.template is not None:
            self.template.close()
        if self.log_monitor is not None:  # after the workers exit: their last lines too
            self.log_monitor.stop()
            self.printer.flush_all()
        self.store.close()
        shm.cleanup_session(self.session)
        if self._own_spill_dir:
            shutil.rmtree(self.spill_dir, ignore_errors=True)


SPILL_PREFIX = "sluice-spill-"


def cleanup_stale_spill_dirs() -> int:
    """Remove default spill dirs (``sluice-spill-{pid}-...`` in the temp dir) of dead drivers."""
    return shm.remove_dead_drivers_dirs(SPILL_PREFIX)


def detect_gpus() -> int:
    """GPUs on this machine: those CUDA_VISIBLE_DEVICES lists, else the /dev/nvidiaN devices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    try:
        return len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()])
    except OSError:
        return 0

