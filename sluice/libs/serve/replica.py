"""The actor each replica of a deployment runs: the user's object behind a direct channel.

``Replica`` is an async actor. :meth:`Replica.initialize` builds the user's object (a
class's instance, or a wrapper calling a function), applies its ``user_config`` through
``reconfigure``, and listens with :func:`~sluice.libs.serve.channel.serve_channel`; requests
then come over the channel, never as actor calls. A CALL frame's body is the pickled
``(args, kwargs)`` of ``method``; an HTTP frame goes to ``http.call_http``. A few method
names starting ``__serve_`` are the controller's (health, watch, reconfigure, drain).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import pickle
import tempfile
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sluice.libs.serve.channel import HTTP, Frame, serve_channel
from sluice.libs.serve.codec import dumps, error_body, loads
from sluice.libs.serve.config import DeploymentConfig
from sluice.libs.serve.handle import STREAM
from sluice.libs.serve.router import ReplicaInfo
from sluice.libs.serve.syncpool import run_sync

log = logging.getLogger("sluice.serve")

HEALTH, WATCH, RECONFIGURE, DRAIN, ONGOING = (
    "__serve_check_health__", "__serve_watch__", "__serve_reconfigure__", "__serve_drain__",
    "__serve_ongoing__")
"""Control requests the controller sends over a replica's channel."""


@dataclass(frozen=True)
class ReplicaContext:
    """What ``serve.get_replica_context()`` gives code running in a replica."""

    app_name: str
    deployment: str
    replica_id: str
    servable_object: Any = None


_CONTEXT: list[ReplicaContext] = []  # this process's replica, once initialized


def current_context() -> ReplicaContext | None:
    """The replica this process runs, or None outside a replica."""
    return _CONTEXT[0] if _CONTEXT else None


class _FunctionDeployment:
    """A function deployment's object: calling it calls the function."""

    def __init__(self, fn: Any):
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


def socket_address(replica_id: str) -> str:
    """Where the replica ``replica_id`` listens on this machine (a short Unix socket path)."""
    where = os.path.join(tempfile.gettempdir(), f"sluice-serve-{os.getuid()}")
    os.makedirs(where, exist_ok=True)
    return f"unix:{where}/{uuid.uuid5(uuid.NAMESPACE_URL, replica_id).hex[:16]}.sock"


def listen_address(replica_id: str) -> str:
    """A Unix socket on a one-machine runtime; TCP on this node's address on a cluster (callers
    may be on other machines)."""
    import sluice

    try:
        nodes = [n for n in sluice.nodes() if n.get("Alive", n.get("alive"))]
        if len(nodes) > 1:
            me = sluice.get_runtime_context().get_node_id()
            where = next(n["NodeManagerAddress"] for n in nodes if n["NodeID"] == me)
            host = where.rpartition(":")[0] if where.count(":") == 1 else where
            return f"tcp:{host}:0"
    except Exception:  # noqa: BLE001 - no node table here: this machine only
        log.debug("replica %s: no node table; listening on a Unix socket", replica_id)
    return socket_address(replica_id)


def _node_id() -> str:
    import sluice

    try:
        return sluice.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no runtime context here
        return ""


class _ServingLoop:
    """The event loop (uvloop where installed) in a thread of its own that serves a replica:
    its channel, the user's object and every call into it. The actor's own methods hop onto
    it, so the user's code always runs on one loop, and the hot path runs on uvloop."""

    def __init__(self, replica_id: str):
        try:
            import uvloop
        except ImportError:
            self.loop = asyncio.new_event_loop()
        else:
            self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name=f"sluice-replica-{replica_id}")
        self.thread.start()

    async def run(self, coro: Any) -> Any:
        """Run ``coro`` on the serving loop; its result (awaited from any loop)."""
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))


def run_sync_in_threadpool() -> bool:
    """Whether a replica runs its sync methods in worker threads: Ray Serve's
    ``RAY_SERVE_RUN_SYNC_IN_THREADPOOL=1`` in the replica's environment. By default, as in
    Ray Serve, they run on the replica's event loop (a blocking one holds up the others)."""
    return os.environ.get("RAY_SERVE_RUN_SYNC_IN_THREADPOOL", "0").strip().lower() in (
        "1", "true")


class Replica:
    """One replica (an async actor): constructed with its deployment's definition and
    configuration, serving requests over its channel once :meth:`initialize` returned."""

    def __init__(self, deployment_id: str, replica_id: str, definition: bytes,
                 init: bytes, config: DeploymentConfig):
        self.deployment_id = deployment_id
        self.replica_id = replica_id
        self._definition = definition
        self._init = init
        self.config = config
        self.user: Any = None
        self.ongoing = 0
        self.received = 0  # requests taken so far (drain waits for it to stop growing)
        self._methods: dict[str, Any] = {}
        self._server: Any = None
        self._idle = asyncio.Event()
        # At most max_ongoing_requests user calls run at once, whichever callers sent them
        # (each router caps only its own); the rest wait here in arrival order.
        self._slots = asyncio.Semaphore(config.max_ongoing_requests)
        self._serving = _ServingLoop(replica_id)
        self._sync_in_thread = run_sync_in_threadpool()

    async def initialize(self) -> ReplicaInfo:
        """Build the user's object and listen; where to reach this replica."""
        return await self._serving.run(self._initialize())

    async def _initialize(self) -> ReplicaInfo:
        target = pickle.loads(self._definition)
        args, kwargs = pickle.loads(self._init)
        app, _, name = self.deployment_id.partition("#")
        _CONTEXT[:] = [ReplicaContext(app, name, self.replica_id)]
        if inspect.isclass(target):
            self.user = target(*args, **kwargs)
        else:
            self.user = _FunctionDeployment(target)
        _CONTEXT[:] = [ReplicaContext(app, name, self.replica_id, self.user)]
        if self.config.user_config is not None:
            await self._reconfigure(self.config.user_config)
        address = listen_address(self.replica_id)
        self._server = await serve_channel(address, self._handle, error_body)
        if address.startswith("tcp:"):  # the port the system chose
            host, port = self._server.sockets[0].getsockname()[:2]
            address = f"tcp:{host}:{port}"
        scaling = self.config.autoscaling_config
        return ReplicaInfo(self.replica_id, address, _node_id(),
                           self.config.max_ongoing_requests, self.config.max_queued_requests,
                           scaling.metrics_interval_s if scaling is not None else 0.0)

    async def check_health(self) -> None:
        """Run the user's ``check_health`` (if any); raises when it does."""
        return await self._serving.run(self._check_health())

    async def _check_health(self) -> None:
        check = getattr(self.user, "check_health", None)
        if check is not None:
            result = check()
            if inspect.isawaitable(result):
                await result

    async def reconfigure(self, user_config: Any) -> None:
        """Call the user's ``reconfigure(user_config)`` in place (no restart)."""
        return await self._serving.run(self._reconfigure(user_config))

    async def _reconfigure(self, user_config: Any) -> None:
        fn = getattr(self.user, "reconfigure", None)
        if fn is None:
            raise TypeError(f"deployment {self.deployment_id!r} has a user_config but its class "
                            "has no reconfigure(self, user_config) method; add one, or drop "
                            "user_config")
        result = fn(user_config)
        if inspect.isawaitable(result):
            await result

    async def drain(self, timeout_s: float, quiet_s: float = 0.0) -> int:
        """Stop taking new connections; wait (at most ``timeout_s``) until no request is
        ongoing and, with ``quiet_s``, none arrived for that long (callers that have not yet
        seen this replica leave the membership stop sending). Returns how many were still
        ongoing."""
        return await self._serving.run(self._drain(timeout_s, quiet_s))

    async def _drain(self, timeout_s: float, quiet_s: float = 0.0) -> int:
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            seen = self.received
            if self.ongoing > 0:
                self._idle.clear()
                try:
                    await asyncio.wait_for(self._idle.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
            if quiet_s <= 0:
                break
            await asyncio.sleep(min(quiet_s, max(0.0, deadline - loop.time())))
            if self.ongoing == 0 and self.received == seen:
                break
        return self.ongoing

    async def num_ongoing(self) -> int:
        """Requests this replica is serving now."""
        return self.ongoing

    async def _handle(self, frame: Frame) -> Any:
        if frame.method.startswith("__serve_"):
            return await self._control(frame)
        self.ongoing += 1
        self.received += 1
        streaming = False
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:  # the caller gave up while it waited for a slot
            self.ongoing -= 1
            if self.ongoing == 0:
                self._idle.set()
            raise
        try:
            if frame.kind == HTTP:
                from sluice.libs.serve import http

                result = await http.call_http(self.user, frame.meta, frame.body,
                                              sync_in_thread=self._sync_in_thread)
                streaming = not isinstance(result, (bytes, bytearray, memoryview))
                if streaming:
                    return self._counted(result)
                return result
            method = self._methods.get(frame.method)
            if method is None:
                method = self._method(frame.method)
            args, kwargs = loads(frame.body)
            if self._sync_in_thread and not (inspect.iscoroutinefunction(method)
                                             or inspect.isasyncgenfunction(method)):
                result = await run_sync(functools.partial(method, *args, **kwargs))
            else:
                result = method(*args, **kwargs)
            if frame.meta == STREAM:
                streaming = True
                return self._counted(self._items(result))
            if inspect.isawaitable(result):
                result = await result
            return dumps(result)
        except Exception:
            log.exception("replica %s: request %s failed", self.replica_id, frame.method)
            raise
        finally:
            if not streaming:
                self._done()

    def _done(self) -> None:
        self._slots.release()
        self.ongoing -= 1
        if self.ongoing == 0:
            self._idle.set()

    async def _counted(self, items: Any) -> Any:
        try:
            async for item in items:
                yield item
        finally:
            self._done()

    async def _items(self, result: Any) -> Any:
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__aiter__"):
            async for item in result:
                yield dumps(item)
        elif hasattr(result, "__iter__"):
            for item in result:
                yield dumps(item)
        else:
            raise TypeError(f"a streaming call (options(stream=True)) needs a generator method; "
                            f"{type(self.user).__name__} returned {type(result).__name__}")

    def _method(self, name: str) -> Any:
        method = getattr(self.user, name, None)
        if method is None or name.startswith("_") and name != "__call__":
            raise AttributeError(f"deployment {self.deployment_id!r} has no method {name!r}; "
                                 f"call one of its public methods")
        self._methods[name] = method
        return method

    async def _control(self, frame: Frame) -> bytes:
        if frame.method == HEALTH:
            await self._check_health()
        elif frame.method == WATCH:
            await asyncio.Event().wait()  # answered only by the channel breaking
        elif frame.method == ONGOING:
            return dumps(self.ongoing)
        elif frame.method == RECONFIGURE:
            await self._reconfigure(loads(frame.body))
        elif frame.method == DRAIN:
            return dumps(await self._drain(*loads(frame.body)))
        return b""
