"""The HTTP proxy: uvicorn serving one ASGI app that forwards each request, over a direct
channel, to a replica of the ingress deployment of the app whose route prefix matches.

- :class:`ProxyApp` is the ASGI app: it follows a route source's long polls (the controller's
  ``listen_routes`` and, per ingress deployment, ``listen_replicas``), keeps one router per
  ingress deployment, and answers a request with the longest route prefix that owns its path
  (404 naming the known prefixes when none does; 503 when the router is over its queue
  limit or a replica refuses with ``BackPressureError``; 500 ``"<Type>: <message>"`` of the
  replica's error). ``/-/routes`` and ``/-/healthz`` are the proxy's own, as in Ray Serve. A client that disconnects cancels its request
  (the channel sends CANCEL to the replica).
- :class:`ProxyServer` runs an app on uvicorn in a thread of its own with its own event loop
  (uvloop where installed), on a socket bound before it starts, so a port in use fails at once.
- :class:`HTTPProxy` is the sluice actor the controller starts: a :class:`ProxyServer` over
  a :class:`ProxyApp` following the controller.

A route table is ``{route_prefix: (app_name, ingress_deployment_id)}``; the replica's answer
travels as :mod:`sluice.libs.serve.http` encodes it (one OK frame, or ITEM frames for a
streamed body).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import pickle
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from sluice.libs.serve.channel import ERROR, HTTP, ITEM, OK, Frame
from sluice.libs.serve.http import decode_response, encode_request

logger = logging.getLogger(__name__)

RouteTable = dict[str, tuple[str, str]]
"""``{route_prefix: (app_name, ingress_deployment_id)}``."""

RETRY_S = 1.0
"""How long the proxy waits before asking a route source again after a failed long poll."""

WATCH_AFTER_S = 0.02
"""A request still unanswered this long starts watching for its client's disconnect (one
that disconnected earlier is seen then)."""


class RouteSource(Protocol):
    """Where the proxy learns its routes and replicas (the controller's long polls)."""

    async def listen_routes(self, known_version: int) -> tuple[int, RouteTable]:
        """The route table and its version, once the version differs from ``known_version``
        (or after a timeout, with the same version)."""

    async def listen_replicas(self, deployment_id: str, known_version: int) -> tuple[int, list]:
        """The deployment's replicas (``ReplicaInfo``) and their version, as above."""


class ReplicaRouter(Protocol):
    """What the proxy needs of a router (``sluice.libs.serve.router.Router``)."""

    def update(self, replicas: list) -> None:
        """Route to ``replicas`` (``ReplicaInfo``) from now on."""

    def stream(self, kind: int, method: str, meta: bytes, body: bytes
               ) -> AsyncGenerator[Frame, None]:
        """Send one request to a replica; its answer frames: one OK or ERROR, or ITEM frames
        then END (or ERROR). Raises ``BackPressureError`` past the queue limit."""

    # Optional, used when present: ``async open(kind, method, meta, body) -> (first frame,
    # the frames after it or None)``, as ``Router.open`` (no generator per request).


def default_router(deployment_id: str) -> ReplicaRouter:
    """The router the proxy uses for an ingress deployment: serve's power-of-two-choices
    :class:`~sluice.libs.serve.router.Router` (its replicas bring their
    ``max_ongoing_requests``)."""
    from sluice.libs.serve.router import Router

    return Router(deployment_id, max_ongoing_requests=5, max_queued_requests=-1)


def error_text(body: bytes) -> str:
    """``"<Type>: <message>"`` of a replica's ERROR frame body (a pickled exception)."""
    return error_answer(body)[1]


def error_answer(body: bytes) -> tuple[int, str]:
    """The HTTP status and text answering a replica's ERROR frame body (a pickled
    exception): 503 for a ``BackPressureError`` (the replica is full), else 500."""
    try:
        exc = pickle.loads(body)
    except Exception as load_error:  # noqa: BLE001 - the class may not import here
        return 500, f"the replica failed with an error the proxy cannot load ({load_error})"
    return (503 if _is_back_pressure(exc) else 500), describe(exc)


def describe(exc: BaseException) -> str:
    """``"<Type>: <message>"`` for an HTTP error body."""
    return f"{type(exc).__name__}: {exc}"


def _is_back_pressure(exc: BaseException) -> bool:
    # Ray's name for "over max_queued_requests"; matched by name so the proxy does not
    # depend on where the router defines it
    return any(cls.__name__ == "BackPressureError" for cls in type(exc).__mro__)


class ProxyApp:
    """The proxy's ASGI app: longest-prefix routing to each app's ingress router.

    Call :meth:`start` on the loop that serves it (it starts following ``route_source``),
    :meth:`stop` to end that. ``make_router(deployment_id)`` makes the router of an ingress
    deployment; the app feeds it the deployment's replicas as they change.
    """

    def __init__(self, route_source: RouteSource,
                 make_router: Callable[[str], ReplicaRouter] = default_router):
        self.route_source = route_source
        self.make_router = make_router
        self.version = -1  # of the route table in use
        # (prefix, prefix + "/", app_name, deployment_id), longest prefix first
        self._routes: list[tuple[str, str, str, str]] = []
        self._routers: dict[str, ReplicaRouter] = {}
        self._followers: dict[str, asyncio.Task] = {}
        self._follow_routes: asyncio.Task | None = None
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ route table
    def start(self) -> None:
        """Start following the route source (call on the serving loop)."""
        self._changed = asyncio.Event()
        self._follow_routes = asyncio.ensure_future(self._follow(self._routes_loop()))

    def stop(self) -> None:
        """Stop following the route source and every deployment's replicas."""
        for task in [self._follow_routes, *self._followers.values()]:
            if task is not None:
                task.cancel()
        self._followers.clear()

    def routes(self) -> dict[str, str]:
        """``{route_prefix: app_name}`` in use."""
        return {prefix: app for prefix, _, app, _ in self._routes}

    async def wait_for_version(self, version: int) -> int:
        """Wait until the route table in use has a version of at least ``version``."""
        while self.version < version:
            self._changed.clear()
            await self._changed.wait()
        return self.version

    async def _follow(self, loop: Any) -> None:
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except Exception:  # an internal failure: say so instead of serving stale routes
            logger.exception("the HTTP proxy stopped following its routes")
            raise

    async def _routes_loop(self) -> None:
        while True:
            try:
                version, table = await self.route_source.listen_routes(self.version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the controller may be restarting
                logger.warning("listen_routes failed (%s); asking again in %ss", describe(exc),
                               RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            if version != self.version:
                self.set_routes(version, table)

    def set_routes(self, version: int, table: RouteTable) -> None:
        """Route by ``table`` from now on; routers of deployments no longer in it stop."""
        wanted = {deployment_id for _, deployment_id in table.values()}
        for deployment_id in list(self._routers):
            if deployment_id not in wanted:
                self._followers.pop(deployment_id).cancel()
                self._routers.pop(deployment_id).update([])
        for deployment_id in wanted - set(self._routers):
            self._routers[deployment_id] = self.make_router(deployment_id)
            self._followers[deployment_id] = asyncio.ensure_future(
                self._follow(self._replicas_loop(deployment_id)))
        self._routes = sorted(((prefix, prefix.rstrip("/") + "/", app, deployment_id)
                               for prefix, (app, deployment_id) in table.items()),
                              key=lambda route: len(route[0]), reverse=True)
        self.version = version
        self._changed.set()

    async def _replicas_loop(self, deployment_id: str) -> None:
        version = -1
        while True:
            try:
                version, replicas = await self.route_source.listen_replicas(deployment_id, version)
            except asyncio.CancelledError:
                raise
            except ValueError:  # the deployment was deleted: the route table drops it next
                return
            except Exception as exc:  # noqa: BLE001 - the controller may be restarting
                logger.warning("listen_replicas(%r) failed (%s); asking again in %ss",
                               deployment_id, describe(exc), RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            router = self._routers.get(deployment_id)
            if router is None:
                return
            router.update(replicas)

    def match(self, path: str) -> tuple[str, str, str] | None:
        """``(route_prefix, app_name, ingress_deployment_id)`` of the longest prefix that owns
        ``path`` (``/a`` owns ``/a`` and ``/a/b``, not ``/ab``), or None."""
        for prefix, prefix_slash, app, deployment_id in self._routes:
            if path.startswith(prefix_slash) or path == prefix:
                return prefix, app, deployment_id
        return None

    # ----------------------------------------------------------------------- requests
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003,
                            "reason": "sluice serve does not proxy websockets"})
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # uvicorn puts its root_path in front of the path
            path = path[len(root):]
        if path in ("/-/routes", "/-/healthz"):  # the proxy's own, as Ray Serve's
            await self._answer_unrouted(path, send)
            return
        route = self.match(path)
        if route is None:
            await self._answer_unrouted(path, send)
            return
        prefix, _, deployment_id = route
        router = self._routers[deployment_id]  # (set_routes keeps both in step)
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its whole body
        meta = encode_request(scope, root + ("" if prefix == "/" else prefix))
        # a client that disconnects cancels this task (so the replica's coroutine) unless
        # the response has been sent by then; watched only once the request takes a while
        # (a watcher is a task per request: most requests are answered before it would start)
        exchange = _Exchange(asyncio.current_task(), receive)
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, exchange.watch)
        try:
            await self._forward(router, meta, body, send, exchange)
        except asyncio.CancelledError:
            if not exchange.disconnected:
                raise
            _uncancel(asyncio.current_task())  # ours: the client is gone, nothing to answer
        finally:
            exchange.answered = True
            timer.cancel()
            if exchange.watcher is not None:
                exchange.watcher.cancel()

    async def _forward(self, router: ReplicaRouter, meta: bytes, body: bytes, send: Callable,
                       exchange: _Exchange) -> None:
        opener = getattr(router, "open", None)
        frames: Any = None
        try:
            try:
                if opener is not None:  # one future for a whole answer, a stream only if needed
                    frame, frames = await opener(HTTP, "__call__", meta, body)
                else:
                    frames = router.stream(HTTP, "__call__", meta, body)
                    frame = await frames.__anext__()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the router's errors, answered
                if _is_back_pressure(exc):
                    await _answer(send, 503, describe(exc))
                else:
                    logger.warning("an HTTP request failed: %s", describe(exc))
                    await _answer(send, 500, describe(exc))
                return
            if frame.kind == OK:
                status, headers, content = decode_response(frame.body)
                exchange.answered = True
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": bytes(content)})
            elif frame.kind == ITEM:
                await self._stream(frame, frames, send, exchange)
            elif frame.kind == ERROR:
                await _answer(send, *error_answer(frame.body))
            else:
                await _answer(send, 500, f"the replica answered an HTTP request with a frame of "
                                         f"kind {frame.kind}, not OK, ITEM or ERROR")
        finally:
            if frames is not None:
                await frames.aclose()

    async def _stream(self, head: Frame, frames: AsyncIterator[Frame], send: Callable,
                      exchange: _Exchange) -> None:
        status, headers, content = decode_response(head.body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if content:
            await send({"type": "http.response.body", "body": bytes(content), "more_body": True})
        async for frame in frames:
            if frame.kind == ITEM:
                await send({"type": "http.response.body", "body": frame.body, "more_body": True})
            elif frame.kind == ERROR:  # too late for a status: cut the response short
                raise RuntimeError(f"the replica failed while streaming its response: "
                                   f"{error_text(frame.body)}")
            else:
                exchange.answered = True
                await send({"type": "http.response.body", "body": b""})
                return

    async def _answer_unrouted(self, path: str, send: Callable) -> None:
        if path == "/-/routes":
            await _answer(send, 200, json.dumps(self.routes()), b"application/json")
        elif path == "/-/healthz":
            await _answer(send, 200, "success")
        elif not self._routes:
            await _answer(send, 404, f"Path {path!r} not found: no application is running; "
                                     f"deploy one with serve.run(app, route_prefix=...)")
        else:
            known = ", ".join(repr(prefix) for prefix, _, _, _ in reversed(self._routes))
            await _answer(send, 404, f"Path {path!r} not found; the route prefixes served "
                                     f"are {known}")


def _uncancel(task: Any) -> None:
    """Forget a cancellation that was handled (Python 3.11+ counts them; 3.10 does not)."""
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


class _Exchange:
    """One request's state between the proxy's task and its disconnect watcher."""

    __slots__ = ("task", "receive", "answered", "disconnected", "watcher")

    def __init__(self, task: asyncio.Task | None, receive: Callable):
        self.task = task
        self.receive = receive
        self.answered = False  # the whole response went out: a disconnect now changes nothing
        self.disconnected = False
        self.watcher: asyncio.Task | None = None

    def watch(self) -> None:
        """Start watching for the client's disconnect (it cancels the request's task)."""
        if not self.answered:
            self.watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        if not self.answered and self.task is not None:
            self.disconnected = True
            self.task.cancel()


async def _read_body(receive: Callable) -> bytes | None:
    """The request's whole body; None if the client disconnected first."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: Callable, status: int, text: str,
                  content_type: bytes = b"text/plain; charset=utf-8") -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------ the server

def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); a port in use raises
    an ``OSError`` naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(errno.EADDRINUSE,
                          f"HTTP port {port} on {host} is already in use; stop what listens there "
                          f"or give serve another one: serve.start(http_options={{'port': ...}})"
                          ) from None
        raise OSError(exc.errno, f"cannot serve HTTP on {host}:{port}: {exc.strerror}; "
                                 f"check http_options' host and port") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _CoalescedWrites:
    """A connection's transport that sends a response's head together with its body.

    uvicorn writes the status line and headers, then the body: two writes, so two system
    calls and two segments for the client to read, for every answer. Here a head waits for
    the next write (the body, written at once by the proxy for a whole answer) and goes out
    with it; a head with no write after it (a stream's first item still to come) goes out
    at the end of the event loop's step. Anything else passes straight to the transport.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) < 65536:
                self._transport.write(held + data)
                return
            self._transport.write(held)
        elif data[:5] == b"HTTP/":  # a response's head: its body follows
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface
        return getattr(self._transport, name)


def _http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools where installed, else h11), each connection's
    writes through :class:`_CoalescedWrites`."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class CoalescingHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(_CoalescedWrites(transport, asyncio.get_running_loop()))

    return CoalescingHTTPProtocol


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ProxyServer:
    """uvicorn serving ``app`` on ``host:port`` from a thread and an event loop of its own.

    :meth:`start` binds the port (an ``OSError`` naming it when in use) and returns once
    uvicorn serves; ``port`` is then the bound port. ``app.start()``/``app.stop()`` run on
    the server's loop when it has them (a :class:`ProxyApp`).
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000, *,
                 root_path: str = "", keep_alive_timeout_s: int = 90,
                 graceful_shutdown_s: int = 5):
        self.app = app
        self.host = host
        self.port = port
        self.root_path = root_path  # where a reverse proxy in front mounts us (Ray's)
        self.keep_alive_timeout_s = keep_alive_timeout_s  # Ray Serve's default, 90 s
        self.graceful_shutdown_s = graceful_shutdown_s  # then requests still open are cancelled
        self._loop: asyncio.AbstractEventLoop | None = None  # the server thread's
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 60.0) -> ProxyServer:
        """Bind and start serving; raise what kept uvicorn from starting."""
        import uvicorn

        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False,
                                loop="none", ws="none", http=_http_protocol(),
                                proxy_headers=False,
                                root_path=self.root_path,
                                timeout_keep_alive=self.keep_alive_timeout_s,
                                timeout_graceful_shutdown=self.graceful_shutdown_s)
        self._server = uvicorn.Server(config)
        self._loop = _new_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, started), daemon=True,
                                        name=f"sluice-http-proxy-{self.port}")
        self._thread.start()
        if not started.wait(timeout_s):
            raise TimeoutError(f"uvicorn did not start serving {self.host}:{self.port} within "
                               f"{timeout_s}s")
        if self._error is not None:
            raise self._error
        return self

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop serving HTTP (in the server's thread)."""
        if self._loop is None:
            raise RuntimeError("the proxy server has not started: call start() first")
        return self._loop

    def _run(self, sock: socket.socket, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve(sock, started))
        except BaseException as exc:  # noqa: BLE001 - start() raises it
            self._error = exc
        finally:
            started.set()
            sock.close()

    async def _serve(self, sock: socket.socket, started: threading.Event) -> None:
        if isinstance(self.app, ProxyApp):
            self.app.start()
        serving = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        try:
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.005)  # uvicorn has no "started" callback
            started.set()
            await serving
        finally:
            if isinstance(self.app, ProxyApp):
                self.app.stop()
            # end what requests and routers left on this loop (channel readers) before it closes
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the server's loop from another thread; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        """Stop serving (open connections close) and wait for the thread to end."""
        if self._thread is None:
            return
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(setattr, self._server, "should_exit", True)
            self._thread.join()
        self._thread = None
        self.loop.close()


# ------------------------------------------------------------------------------- the actor

class ActorRouteSource:
    """A :class:`RouteSource` over the controller actor's ``listen_routes`` and
    ``listen_replicas`` methods (each long poll waits on a thread of its own)."""

    def __init__(self, controller: Any):
        self.controller = controller
        self._pool = ThreadPoolExecutor(64, thread_name_prefix="sluice-proxy-poll")

    async def _get(self, ref: Any) -> Any:
        import sluice

        return await asyncio.get_running_loop().run_in_executor(self._pool, sluice.get, ref)

    async def listen_routes(self, known_version: int) -> tuple[int, RouteTable]:
        return await self._get(self.controller.listen_routes.remote(known_version))

    async def listen_replicas(self, deployment_id: str, known_version: int) -> tuple[int, list]:
        return await self._get(self.controller.listen_replicas.remote(deployment_id, known_version))


class HTTPProxy:
    """The serve proxy actor: HTTP on ``host:port`` routed as the controller says.

    ``controller`` is the controller's actor handle, or None to look up the actor named
    ``SERVE_CONTROLLER`` in namespace ``serve``. Start it with ``sluice.remote(HTTPProxy)``
    and call :meth:`ready` (it raises when the port is in use).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, controller: Any = None,
                 make_router: Callable[[str], ReplicaRouter] = default_router, *,
                 root_path: str = "", keep_alive_timeout_s: int = 90):
        if controller is None:
            import sluice

            controller = sluice.get_actor("SERVE_CONTROLLER", namespace="serve")
        self.app = ProxyApp(ActorRouteSource(controller), make_router)
        self.server = ProxyServer(self.app, host, port, root_path=root_path,
                                  keep_alive_timeout_s=keep_alive_timeout_s)
        self._error: BaseException | None = None
        try:
            self.server.start()
        except BaseException as exc:  # noqa: BLE001 - ready() raises it at the caller
            self._error = exc

    async def ready(self) -> tuple[str, int]:
        """``(host, port)`` served; raises what kept the server from starting."""
        if self._error is not None:
            raise self._error
        return self.server.host, self.server.port

    async def routes(self) -> dict[str, str]:
        """``{route_prefix: app_name}`` the proxy serves now."""
        return self.app.routes()

    async def wait_for_routes(self, version: int) -> int:
        """Wait until the proxy routes by a table of at least ``version``; that version."""
        future = asyncio.run_coroutine_threadsafe(self.app.wait_for_version(version),
                                                  self.server.loop)
        return await asyncio.wrap_future(future)

    async def shutdown(self) -> None:
        """Stop serving HTTP."""
        await asyncio.get_running_loop().run_in_executor(None, self.server.stop)
