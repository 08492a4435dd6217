"""Deployment handles: calls to a deployment's replicas straight over direct channels.

``handle.remote(x)`` (or ``handle.method.remote(x)``) sends one request through the
deployment's :class:`~sluice.libs.serve.router.Router` and returns a
:class:`DeploymentResponse` at once: ``await`` it in async code (a replica), or call
``.result()`` in sync code (the driver). A sync caller's call goes straight over a blocking
socket from its own thread when a replica has room (:mod:`sluice.libs.serve.syncchannel`);
otherwise, and for streams, sync callers share one background event loop thread per process.
Async callers use their own loop. A response passed as an argument to another
handle call is resolved there, without the caller waiting. Each loop's router follows the
controller's membership long poll (``listen_replicas``) and, for a deployment that autoscales,
reports the requests it queues (none of its replicas has room) every ``metrics_interval_s``:
the controller counts them with the replicas' own, as Ray Serve's handles report theirs.

>>> h = DeploymentHandle("Model", "app")
>>> h.predict
DeploymentHandle(deployment='Model', app='app', method='predict')
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sluice.libs.serve.channel import CALL, END, ERROR, OK
from sluice.libs.serve.codec import dumps, error_from, loads
from sluice.libs.serve.router import Router
from sluice.libs.serve.syncchannel import SyncCall, SyncChannel

CONTROLLER_NAME = "SERVE_CONTROLLER"
"""The controller actor's name (in namespace :data:`SERVE_NAMESPACE`)."""
SERVE_NAMESPACE = "serve"
REPORT_IDLE_S = 1.0
"""How often a router of a deployment that does not autoscale looks again whether it does."""
STREAM = b"stream"
"""A CALL frame's ``meta`` for a streaming call (a generator method): answered by ITEMs."""


class DeploymentHandle:
    """Calls one deployment of one app (picklable: pass it to tasks, actors, constructors).

    ``.remote(*args, **kwargs)`` calls ``__call__`` (or the method chosen with
    ``handle.method_name`` / ``.options(method_name=...)``); ``.options(stream=True)`` for a
    generator method gives a :class:`DeploymentResponseGenerator`.
    """

    __slots__ = ("_deployment_name", "_app_name", "_method_name", "_stream", "_deployment_id")

    def __init__(self, deployment_name: str, app_name: str = "default",
                 method_name: str = "__call__", stream: bool = False):
        self._deployment_name = deployment_name
        self._app_name = app_name
        self._method_name = method_name
        self._stream = stream
        self._deployment_id = f"{app_name}#{deployment_name}"

    @property
    def deployment_name(self) -> str:
        """The deployment this handle calls."""
        return self._deployment_name

    @property
    def app_name(self) -> str:
        """The app of that deployment."""
        return self._app_name

    def options(self, *, method_name: str | None = None, stream: bool | None = None,
                **_ray_only: Any) -> DeploymentHandle:
        """A handle with ``method_name`` and/or ``stream`` changed (Ray's other options, e.g.
        ``multiplexed_model_id``, are accepted and not used)."""
        return DeploymentHandle(self._deployment_name, self._app_name,
                                self._method_name if method_name is None else method_name,
                                self._stream if stream is None else bool(stream))

    def __getattr__(self, name: str) -> DeploymentHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def __reduce__(self) -> tuple:
        return (DeploymentHandle, (self._deployment_name, self._app_name, self._method_name,
                                   self._stream))

    def __repr__(self) -> str:
        return (f"DeploymentHandle(deployment={self._deployment_name!r}, "
                f"app={self._app_name!r}, method={self._method_name!r})")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Send the call; a :class:`DeploymentResponse` (or, with ``stream=True``, a
        :class:`DeploymentResponseGenerator`) at once."""
        loop, on_loop = _caller_loop()
        router = _router(loop, self._deployment_id, on_loop)
        waits = any(type(a) is DeploymentResponse for a in args) or any(
            type(v) is DeploymentResponse for v in kwargs.values())
        body = None if waits else dumps((args, kwargs))
        if self._stream:
            return DeploymentResponseGenerator(loop, on_loop, router, self._method_name, body,
                                               (args, kwargs))
        if not on_loop and body is not None:  # straight from this thread, when there is room
            sent = _send_sync(router, loop, self._method_name, body)
            if sent is not None:
                return DeploymentResponse(None, None, sent)
        coro = _call(router, self._method_name, body, (args, kwargs))
        if on_loop:
            return DeploymentResponse(loop.create_task(coro), None)
        return DeploymentResponse(None, asyncio.run_coroutine_threadsafe(coro, loop))


class DeploymentResponse:
    """The answer of one handle call: ``await`` it, or ``.result(timeout_s=None)`` in sync
    code; pass it to another handle call to hand its value on without waiting."""

    __slots__ = ("_task", "_future", "_sync")

    def __init__(self, task: asyncio.Future | None, future: concurrent.futures.Future | None,
                 sync: SyncCall | None = None):
        self._task = task
        self._future = future
        self._sync = sync  # sent from a sync thread over a SyncChannel (no loop involved)

    def result(self, *, timeout_s: float | None = None) -> Any:
        """Wait for the value (raises the replica's error; TimeoutError after ``timeout_s``)."""
        if self._sync is not None:
            try:
                return self._sync.outcome(_answer, timeout_s)
            except TimeoutError:
                raise TimeoutError(f"the handle call did not answer within timeout_s={timeout_s}"
                                   "; wait longer, or check serve.status() for its deployment"
                                   ) from None
        future = self._future
        if future is None:
            assert self._task is not None
            loop = self._task.get_loop()
            if _running_loop() is loop:
                raise RuntimeError("DeploymentResponse.result() would block the event loop this "
                                   "code runs on; use `await response` in async code")
            future = asyncio.run_coroutine_threadsafe(_await(self._task), loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the handle call did not answer within timeout_s={timeout_s}; "
                               "wait longer, or check serve.status() for its deployment") from None

    def __await__(self):
        if self._sync is not None:  # its answer is read by a thread of the loop's pool
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(None, self._sync.outcome, _answer, None).__await__()
        if self._task is not None and _running_loop() is self._task.get_loop():
            return self._task.__await__()
        if self._future is None:
            self._future = asyncio.run_coroutine_threadsafe(_await(self._task),
                                                            self._task.get_loop())
        return asyncio.wrap_future(self._future).__await__()

    def cancel(self) -> None:
        """Stop waiting for the call; the replica cancels its request."""
        (self._sync or self._task or self._future).cancel()

    def __reduce__(self) -> tuple:
        raise TypeError("a DeploymentResponse cannot be pickled; pass it as a top-level "
                        "argument of another handle call (it is resolved there), or pass its "
                        "value (await it or call .result())")


class DeploymentResponseGenerator:
    """The items of a streaming handle call (``options(stream=True)``), in order:
    ``for`` in sync code, ``async for`` in async code."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_loop: bool, router: Router,
                 method: str, body: bytes | None, call: tuple):
        self._loop = loop
        self._queue: Any = asyncio.Queue() if on_loop else queue.SimpleQueue()
        put = self._queue.put_nowait
        coro = _pump(router, method, body, call, put if on_loop else put)
        self._pump = (loop.create_task(coro) if on_loop
                      else asyncio.run_coroutine_threadsafe(coro, loop))
        self._done = False

    def _item(self, frame: Any) -> Any:
        if isinstance(frame, BaseException):
            self._done = True
            raise frame
        if frame is None:
            self._done = True
            raise StopIteration
        return loads(frame)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if isinstance(self._queue, asyncio.Queue):
            raise RuntimeError("iterate a streaming response made in async code with `async for`")
        return self._item(self._queue.get())

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        if not isinstance(self._queue, asyncio.Queue):
            frame = await asyncio.get_running_loop().run_in_executor(None, self._queue.get)
        else:
            frame = await self._queue.get()
        try:
            return self._item(frame)
        except StopIteration:
            raise StopAsyncIteration from None

    def cancel(self) -> None:
        """Stop the stream; the replica stops its generator."""
        self._pump.cancel()


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _resolve(call: tuple) -> bytes:
    """The call's body, with the DeploymentResponses among its arguments replaced by their
    values (awaited here, on the loop)."""
    args, kwargs = call
    args = tuple([await a if type(a) is DeploymentResponse else a for a in args])
    kwargs = {k: await v if type(v) is DeploymentResponse else v for k, v in kwargs.items()}
    return dumps((args, kwargs))


async def _call(router: Router, method: str, body: bytes | None, call: tuple) -> Any:
    if body is None:
        body = await _resolve(call)
    return _answer(await router.call(CALL, method, b"", body))


def _answer(frame: Any) -> Any:
    """The value an answer frame carries, or the replica's error raised."""
    if frame.kind == OK:
        return loads(frame.body)
    raise error_from(frame.body)


def _send_sync(router: Router, loop: asyncio.AbstractEventLoop, method: str, body: bytes
               ) -> SyncCall | None:
    """Send a sync thread's call over the SyncChannel of a replica with room; None to take
    the loop's path instead (no room, or the replica cannot be reached: that path drops it)."""
    rep = router.pick_for_sync()
    if rep is None:
        return None
    channel = rep.sync
    if channel is None:
        with _LOCK:
            channel = rep.sync
            if channel is None:
                channel = rep.sync = SyncChannel(rep.info.address)
    try:
        rid = channel.send(method, body)
    except OSError:
        return None

    def broken() -> None:  # the replica is gone: the router stops routing to it
        if not loop.is_closed():
            loop.call_soon_threadsafe(router._drop, rep)

    return SyncCall(channel, rid, broken, lambda: router.sync_done(loop))


async def _pump(router: Router, method: str, body: bytes | None, call: tuple, put: Any) -> None:
    try:
        if body is None:
            body = await _resolve(call)
        frames = router.stream(CALL, method, STREAM, body)
        try:
            async for frame in frames:
                if frame.kind == END:
                    break
                if frame.kind == ERROR:
                    put(error_from(frame.body))
                    return
                put(frame.body)
        finally:
            await frames.aclose()  # the router counts the call done now, not at collection
        put(None)
    except asyncio.CancelledError:
        put(None)
        raise
    except BaseException as exc:  # noqa: BLE001 - the consumer gets it
        put(exc)


# -- per process: the background loop for sync callers, routers per loop ----------------------

def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()  # None outside a loop, without raising


class _Background:
    """An event loop in a daemon thread that runs the channel I/O of sync callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True,
                                       name="sluice-serve-handles")
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        self.loop.run_forever()


_LOCK = threading.Lock()
_BACKGROUND: list[_Background] = []  # at most one: made on the first sync handle call
# loop -> {deployment id: its router on that loop}; an entry goes with its loop.
_ROUTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_POLLS: list[Any] = []  # the long-poll tasks (cancelled by reset())
_POOL = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="sluice-serve-poll")


def _caller_loop() -> tuple[asyncio.AbstractEventLoop, bool]:
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop, True
    if not _BACKGROUND:
        with _LOCK:
            if not _BACKGROUND:
                _BACKGROUND.append(_Background())
    return _BACKGROUND[0].loop, False


def _router(loop: asyncio.AbstractEventLoop, deployment_id: str, on_loop: bool) -> Router:
    routers = _ROUTERS.get(loop)
    router = routers.get(deployment_id) if routers is not None else None
    if router is not None:
        return router
    # A sync caller reads the membership once itself: a task's side threads cannot reach the
    # runtime while its main thread waits (the long poll then catches up between calls).
    known = None if on_loop else _membership(deployment_id)
    with _LOCK:
        routers = _ROUTERS.setdefault(loop, {})
        router = routers.get(deployment_id)
        if router is None:
            router = routers[deployment_id] = Router(deployment_id)
            version = -1
            if known is not None:
                version, replicas = known
                router.update(replicas)
            _POLLS[:] = [poll for poll in _POLLS if not poll.done()]
            for work in (_follow(router, routers, version), _report(router, routers)):
                if on_loop:
                    _POLLS.append(loop.create_task(work))
                else:
                    _POLLS.append(asyncio.run_coroutine_threadsafe(work, loop))
    return router


def _membership(deployment_id: str) -> tuple[int, list]:
    return _poll(deployment_id, -1)


def _poll(deployment_id: str, version: int) -> tuple[int, list]:
    """The controller's long poll for ``deployment_id`` (blocks up to 30 s)."""
    import sluice

    return sluice.get(controller().listen_replicas.remote(deployment_id, version))


def router_for(deployment_id: str) -> Router:
    """The Router of ``deployment_id`` ("app#deployment") on the running event loop, made on
    first use and kept following the controller's membership (for the HTTP proxy, which sends
    ``router.stream(HTTP, "__call__", meta, body)``). Call it on the loop that will use it."""
    loop = asyncio.get_running_loop()
    return _router(loop, deployment_id, True)


def controller() -> Any:
    """The serve controller's actor handle (ValueError when serve is not running)."""
    import sluice

    try:
        return sluice.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        raise ValueError("sluice.serve is not running; start it with serve.run(app) or "
                         "serve.start()") from None


async def _follow(router: Router, routers: dict[str, Router], version: int) -> None:
    """Keep ``router``'s replicas those the controller publishes, until it is dropped."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            # Every runtime call in a pool thread: none may block this loop.
            version, replicas = await loop.run_in_executor(
                _POOL, _poll, router.deployment_id, version)
        except asyncio.CancelledError:  # the loop closes, or serve shut down
            with _LOCK:
                if routers.get(router.deployment_id) is router:
                    del routers[router.deployment_id]
            router.close()
            raise
        except Exception as exc:  # noqa: BLE001 - an unknown deployment, serve shut down
            router.fail(exc)
            with _LOCK:
                if routers.get(router.deployment_id) is router:
                    del routers[router.deployment_id]
            return
        router.error = None
        router.update(replicas)


async def _report(router: Router, routers: dict[str, Router]) -> None:
    """While ``router`` is in use: every ``metrics_interval_s`` of its deployment (which
    autoscales), tell the controller how many requests wait in it for a replica."""
    loop = asyncio.get_running_loop()
    handle_id = uuid.uuid4().hex
    reported = 0
    while routers.get(router.deployment_id) is router:
        interval = router.metrics_interval_s
        await asyncio.sleep(interval or REPORT_IDLE_S)
        queued = router.num_queued
        if not interval or (queued == 0 and reported == 0):
            continue
        try:
            await loop.run_in_executor(_POOL, _push_metrics, router.deployment_id, handle_id,
                                       queued)
            reported = queued
        except Exception:  # noqa: BLE001 - serve shutting down: the next round tries again
            pass


def _push_metrics(deployment_id: str, handle_id: str, queued: int) -> None:
    controller().record_handle_metrics.remote(deployment_id, handle_id, queued)


def reset() -> None:
    """Forget every router and stop following the controller (serve shut down)."""
    with _LOCK:
        polls = list(_POLLS)
        _POLLS.clear()
        _ROUTERS.clear()
    for poll in polls:  # each closes its router as it stops
        if isinstance(poll, asyncio.Future):
            loop = poll.get_loop()
            if loop.is_closed():
                continue
            if _running_loop() is loop:
                poll.cancel()
            else:
                loop.call_soon_threadsafe(poll.cancel)
        else:
            poll.cancel()
