"""The sluice API as seen from inside a worker: nested tasks, get, put, wait.

Every call becomes a message to the driver, which owns all scheduling state;
:class:`WorkerAPI` is the :class:`~sluice.executor.backend.Backend` of a worker.
A worker's ObjectRefs are borrowed: the driver hears of each ref this process
starts or stops holding (INCREF/DECREF), in order with everything else it sends.
A streaming generator it starts is iterated by asking the driver for its items
(:mod:`sluice.executor.stream_consumer`).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from sluice.exceptions import GetTimeoutError, InfeasibleResourceError, ObjectLostError, TaskError
from sluice.executor import protocol as P
from sluice.executor.backend import ActorInfo, ChainHop, NodeInfo, ObjectLocation
from sluice.executor.calls import encode_call
from sluice.executor.counting import RefCounts
from sluice.executor.metrics_table import merge as merge_metric
from sluice.executor.object_ref import OWNER_SHIFT, ObjectRef
from sluice.executor.resources import ResourceKey
from sluice.executor.env_files import PACKAGES_KEY, activate_venv, setup_on_node
from sluice.executor.runtime_env import RUNTIME_ENV_VAR, Shipper, merge
from sluice.executor.stream_consumer import StreamConsumer
from sluice.store import serialization, shm

CURRENT_TASK: contextvars.ContextVar[int | None] = contextvars.ContextVar("sluice_task", default=None)
"""The id of the task or actor call the calling code runs in (per thread and per asyncio
task, so each call of a threaded or async actor sees its own)."""
CANCELLED_CALLS: set[int] = set()
"""Actor calls of this worker that were cancelled while running (a sync or threaded actor's
method may read :meth:`RuntimeContext.is_canceled` and stop early, as in Ray)."""


class WorkerAPI:
    """The Backend of a worker process: every call a message to the driver (``Runtime``)."""

    is_driver = False

    def __init__(self, conn: Connection, session: str, index: int):
        self.conn = conn
        self.session = session
        self.index = index
        self.outbox: list = []
        self.send_lock = threading.Lock()
        self.metric_updates: dict[tuple, list] = {}  # user metrics since the last flush
        self.refs = RefCounts()             # the refs this process holds
        self.streams_in = StreamConsumer(self)  # the generators this process iterates
        self.ring: dict[int, tuple] = {}    # recent results kept here (a worker's; else empty)
        self.ids = itertools.count(1)
        self.req_ids = itertools.count(1)
        self.replies: dict[int, Any] = {}
        self.reply_events: dict[int, threading.Event] = {}
        self.sent_functions: set[int] = set()
        self.reader = shm.SegmentReader()
        self.main_thread = threading.main_thread()
        # The runtime_env this process runs in (a cluster driver's: init's), merged under the
        # runtime_env of the tasks and actors it starts: children inherit it, as in Ray.
        spec = os.environ.get(RUNTIME_ENV_VAR)
        self.inherited_runtime_env: dict | None = json.loads(spec) if spec else None
        # A cluster driver's: ships working_dir/py_modules through the object store.
        self.shipper: Shipper | None = None
        # This worker's runtime_env, to set up on its node before its first task (a cluster's:
        # shipped packages to unpack, a pip virtualenv to build); None when there is nothing.
        env = self.inherited_runtime_env or {}
        self.env_setup: dict | None = env if PACKAGES_KEY in env and (
            env[PACKAGES_KEY] or env.get("pip")) else None

    def with_runtime_env(self, options: dict) -> dict:
        """``options`` with this process's runtime_env merged under theirs, its files shipped."""
        spec = merge(self.inherited_runtime_env, options.get("runtime_env"))
        if self.shipper is not None:
            spec = self.shipper.ship(spec)
        return {**options, "runtime_env": spec}

    def apply_env_setup(self) -> None:
        """Set up this worker's runtime_env on its node (:func:`setup_on_node`: unpack its
        shipped packages, build its pip virtualenv, each once per node), activate the
        virtualenv, enter its working_dir and put its folders first on sys.path; raises
        RuntimeEnvSetupError naming the cause (and the next task tries again)."""
        import sys

        from sluice.exceptions import RuntimeEnvSetupError

        spec, self.env_setup = self.env_setup, None
        try:
            cwd, paths, python = setup_on_node(
                spec or {}, lambda oid: self.get([ObjectRef(oid, self)], None)[0])
        except RuntimeEnvSetupError:
            self.env_setup = spec
            raise
        except Exception as err:
            self.env_setup = spec
            raise RuntimeEnvSetupError(f"runtime_env: cannot set up its working_dir/py_modules/pip "
                                       f"on this node ({type(err).__name__}: {err})") from None
        if python is not None:
            activate_venv(python)
        if cwd is not None:
            os.chdir(cwd)
        for path in reversed(paths):
            if path in sys.path:
                sys.path.remove(path)
            sys.path.insert(0, path)

    # -- outgoing messages -----------------------------------------------------------
    def emit(self, msg: tuple) -> None:
        self.outbox.append(msg)

    def flush(self) -> None:
        with self.send_lock:
            self._drain_ref_events()
            if not self.outbox:
                return
            batch, self.outbox = self.outbox, []
            try:
                self.conn.send_bytes(P.pack(batch))
            except (BrokenPipeError, OSError):
                pass  # the driver is gone; the main loop ends on the next read

    def _drain_ref_events(self) -> None:
        # Ref events must reach the driver in order with the messages that follow them.
        outbox = self.outbox
        if self.metric_updates:
            updates, self.metric_updates = self.metric_updates, {}
            outbox.append((P.METRICS, list(updates.values())))
        for oid, first in self.refs.drain():
            outbox.append((P.INCREF if first else P.DECREF, oid))
        if self.streams_in.closed:
            self.streams_in.drain_closed(outbox)

    def add_local_ref(self, oid: int) -> None:
        self.refs.add(oid)

    def remove_local_ref(self, oid: int) -> None:
        self.refs.remove(oid)

    def actor_handle_event(self, actor_id: int, delta: int) -> None:
        """Handles inside a worker are not counted: one arrived pickled, so its actor
        never stops early (the driver counts its own handles)."""

    def new_object_id(self) -> int:
        return (self.index << OWNER_SHIFT) | next(self.ids)

    # -- submissions -----------------------------------------------------------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict) -> list[ObjectRef]:
        parent = CURRENT_TASK.get()
        if parent is not None:  # submitted by a task: cancelled with it (cancel recursive=True)
            options = {**options, "_parent": parent}
        if self.inherited_runtime_env or (self.shipper is not None and options.get("runtime_env")):
            options = self.with_runtime_env(options)
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        return_ids = [self.new_object_id() for _ in range(_result_count(options))]
        send_fn = None if fn_id in self.sent_functions else fn_bytes
        self.sent_functions.add(fn_id)
        refs = self._announce_refs(return_ids)
        self.emit((P.SUBMIT, fn_id, send_fn, blob, deps, contained, return_ids, options))
        self.flush()
        del keep  # the driver now holds the auto-put arguments for the task
        return refs

    def create_actor(self, actor_id: int, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict) -> None:
        if self.inherited_runtime_env or (self.shipper is not None and options.get("runtime_env")):
            options = self.with_runtime_env(options)
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        send = None if cls_id in self.sent_functions else cls_bytes
        self.sent_functions.add(cls_id)
        self.emit((P.CREATE_ACTOR, actor_id, cls_id, send, blob, deps, contained, options))
        self.flush()

    def new_actor_id(self) -> int:
        return self.new_object_id()

    def submit_actor_task(self, actor_id: int, method: str, name: str, args: tuple, kwargs: dict,
                          options: dict) -> list[ObjectRef]:
        blob, deps, contained, keep = encode_call(name, args, kwargs, self.put)
        return_ids = [self.new_object_id() for _ in range(_result_count(options))]
        refs = self._announce_refs(return_ids)
        self.emit((P.CALL_ACTOR, actor_id, method, blob, deps, contained, return_ids,
                   {**options, "name": name}))
        self.flush()
        return refs

    def _announce_refs(self, ids: list[int]) -> list[ObjectRef]:
        """Refs for new results; their INCREFs go out before the call that makes them,
        so the driver counts them even if the call fails on arrival."""
        refs = [ObjectRef(oid) for oid in ids]
        with self.send_lock:
            self._drain_ref_events()
        return refs

    def put(self, value: Any) -> ObjectRef:
        oid = self.new_object_id()
        sobj = serialization.serialize(value)
        if sobj.nbytes <= P.INLINE_MAX:
            spec: tuple = (P.DEP_INLINE, serialization.to_bytes(sobj))
        else:
            spec = (P.DEP_SHM, shm.write_segment(shm.segment_name(self.session, oid), sobj))
        ref = ObjectRef(oid)
        with self.send_lock:  # the INCREF goes first, so the driver never sees an unowned object
            self._drain_ref_events()
            self.outbox.append((P.PUT, oid, spec, sobj.contained_ids))
        return ref

    def kill(self, actor_id: int, no_restart: bool = True) -> None:
        self.emit((P.KILL, actor_id, no_restart))
        self.flush()

    def cancel(self, ref: ObjectRef, force: bool = False, recursive: bool = True) -> None:
        self.emit((P.CANCEL, ref.id, force, recursive))
        self.flush()

    def submit_actor_chain(self, hops: list[ChainHop], first: Any) -> ObjectRef | None:
        """Chains are forwarded from the driver only: a Plan run in a task makes ordinary calls."""
        return None

    def check_feasible(self, demand: ResourceKey, what: str) -> None:
        problem = self._ask("feasible", (demand, what))
        if problem is not None:
            raise InfeasibleResourceError(problem)

    def get_actor(self, name: str, namespace: str) -> ActorInfo | None:
        return self._ask("actor", (name, namespace))

    def named_actors(self, namespace: str | None) -> list[dict[str, str]]:
        return self._ask("named", namespace)

    def context_info(self) -> dict[str, Any]:
        return self._ask("context", CURRENT_TASK.get())

    def cluster_resources(self) -> dict[str, float]:
        return self._ask("resources", "total")

    def available_resources(self) -> dict[str, float]:
        return self._ask("resources", "available")

    def nodes(self) -> list[NodeInfo]:
        return self._ask("nodes", None)

    def object_locations(self, ids: Sequence[int]) -> list[ObjectLocation]:
        return self._ask("locations", list(ids))

    def store_capacity(self) -> int:
        return self._ask("capacity", None)

    def state(self, kind: str) -> list[dict[str, Any]]:
        return self._checked("state", kind)

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        return self._checked("log", (filename, tail))

    def record_metric(self, update: tuple) -> None:
        with self.send_lock:  # added up here; sent with the next flush
            merge_metric(self.metric_updates, update)

    def _checked(self, what: str, arg: Any) -> Any:
        """A LOOKUP answered ``("ok", value)`` or ``("error", why)``: the value, or
        ``ValueError(why)``."""
        status, value = self._ask(what, arg)
        if status == "error":
            raise ValueError(value)
        return value

    def placement_group_op(self, op: str, arg: Any) -> Any:
        return self._ask("pg", (op, arg))

    def placement_group_ready(self, group_id: str) -> ObjectRef:
        oid = self.new_object_id()
        ref = self._announce_refs([oid])[0]
        self._ask("pg", ("ready", (group_id, oid)))
        return ref

    def shutdown(self) -> None:
        """Nothing: the driver owns this process and ends it."""

    # -- streaming generators: the driver hands out the items (executor/stream_consumer.py) --
    def stream_next(self, gid: int, timeout: float | None) -> ObjectRef | None:
        """The next item's ref of streaming call ``gid`` once it arrives; None at the end.
        Raises GetTimeoutError when none came within ``timeout`` seconds."""
        return self.streams_in.next(gid, timeout)

    def stream_ready(self, gid: int) -> bool:
        """Whether the next item (or the end) of streaming call ``gid`` is there."""
        return self.streams_in.has_items(gid) or self._ask("stream_ready", gid)

    def stream_finished(self, gid: int) -> bool:
        """Whether streaming call ``gid`` ended and its every item (and error) was taken."""
        return not self.streams_in.has_items(gid) and self._ask("stream_finished", gid)

    def stream_close(self, gid: int) -> None:
        """The generator was dropped (perhaps in garbage collection): say so with the next
        batch, so the driver frees the items never taken and never pauses the producer."""
        self.streams_in.close(gid)

    def _ask(self, what: str, arg: Any) -> Any:
        """The driver's answer to a LOOKUP (the wire form of the queries above)."""
        req = next(self.req_ids)
        self.emit((P.LOOKUP, req, what, arg))
        return self.await_reply(req, None)

    # -- blocking calls --------------------------------------------------------------
    def get(self, refs: list[ObjectRef], timeout: float | None) -> list:
        ids = [r.id for r in refs]
        specs: dict[int, tuple] = {}
        missing = []
        ring = self.ring
        values = self.streams_in.values  # small items of generators, fetched with their ids
        for oid in ids:
            spec = ring.get(oid)
            if spec is None and values:
                spec = values.get(oid)
            if spec is None:
                missing.append(oid)
            else:
                specs[oid] = spec
        if missing:
            for oid, spec in zip(missing, self.request_objects(missing, timeout)):
                specs[oid] = spec
        return [self.materialize(specs[oid]) for oid in ids]

    def materialize(self, spec: tuple) -> Any:
        kind, payload = spec
        if kind == P.DEP_INLINE:
            return serialization.loads(payload)
        if kind == P.DEP_SHM:
            return self.read_segment(payload)
        if kind == P.DEP_REMOTE:
            return self.read_remote(payload)
        err = serialization.loads(payload)
        if isinstance(err, TaskError):
            raise err.as_instanceof_cause()
        raise err

    def request_objects(self, ids: list[int], timeout: float | None) -> list[tuple]:
        req = next(self.req_ids)
        self.emit((P.GET, req, ids, self.may_nest(timeout)))
        return self.await_reply(req, timeout)

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None) -> list[int]:
        req = next(self.req_ids)
        self.emit((P.WAIT, req, [r.id for r in refs], num_returns, False))
        try:
            return self.await_reply(req, timeout)
        except GetTimeoutError:
            now = next(self.req_ids)
            self.emit((P.WAIT, now, [r.id for r in refs], num_returns, True))
            return self.await_reply(now, None)

    def await_reply(self, req: int, timeout: float | None) -> Any:
        """Block until the driver answers ``req``; the main thread pumps the pipe meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if threading.current_thread() is self.main_thread:
            self.on_block()
            try:
                self.flush()
                while req not in self.replies:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        self.pump(left)
                    except GetTimeoutError:
                        raise GetTimeoutError(
                            f"get timed out after {timeout}s; the objects are not ready yet"
                        ) from None
            finally:
                self.on_unblock()
            return self.replies.pop(req)
        # deliver_reply runs on the main thread; whoever comes first creates the event.
        event = self.reply_events.setdefault(req, threading.Event())
        self.flush()
        if req not in self.replies and not event.wait(timeout):
            raise GetTimeoutError(f"get timed out after {timeout}s; the objects are not ready yet")
        self.reply_events.pop(req, None)
        return self.replies.pop(req)

    def deliver_reply(self, req: int, value: Any) -> None:
        self.replies[req] = value
        if req in self.reply_events or threading.current_thread() is not self.main_thread:
            self.reply_events.setdefault(req, threading.Event()).set()

    def read_segment(self, name: str) -> Any:
        """The value in this machine's segment ``name``. In a cluster the node may have
        spilled it to disk since the head said where it is: then the node reads it back."""
        try:
            return self.reader.read(name)
        except ObjectLostError:
            node = self.node_store()
            if node is None:
                raise
        from sluice.store import transfer

        _, token, tls_root = cluster_env()
        transfer.pull(node, node, name, name, token, tls_root)
        return self.reader.read(name)

    def node_store(self) -> str | None:
        """The Flight location of this machine's node store (cluster workers only)."""
        import os

        return os.environ.get("SLUICE_NODE_FLIGHT")

    def read_remote(self, payload: tuple) -> Any:
        """An object on another node of a cluster: this node's store pulls it once
        (over Arrow Flight), then it is mapped like any local object."""
        from sluice.store import transfer

        oid, source, name, local_name = payload
        node, token, tls_root = cluster_env()
        transfer.pull(node, source, name, local_name, token, tls_root)
        self.emit((P.PULLED, oid, local_name))
        return self.reader.read(local_name)

    # hooks the worker overrides
    def may_nest(self, timeout: float | None) -> bool:
        """Whether a get with ``timeout`` may run the tasks it waits for meanwhile."""
        return False

    def on_main_thread(self) -> bool:
        """Whether the caller is this process's main thread (the one that reads the pipe)."""
        return threading.current_thread() is self.main_thread

    def on_block(self) -> None:
        pass

    def on_unblock(self) -> None:
        pass

    def pump(self, timeout: float | None) -> None:
        raise NotImplementedError


def _result_count(options: dict) -> int:
    """How many result ids a call has: a streaming call has one, its generator id."""
    n = options["num_returns"]
    return 1 if n == "streaming" else n


def cluster_env() -> tuple[str, str, bytes | None]:
    """This worker's node store (its Flight location), the cluster token and TLS root."""
    import os

    root_path = os.environ.get("SLUICE_TLS_ROOT")
    root = None
    if root_path:
        with open(root_path, "rb") as f:
            root = f.read()
    return os.environ.get("SLUICE_NODE_FLIGHT", ""), os.environ.get("SLUICE_TOKEN", ""), root
