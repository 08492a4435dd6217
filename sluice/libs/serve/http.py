"""HTTP between the proxy and a replica: a request's head packed into bytes, the user's
``__call__(request)`` (or its ``@serve.ingress`` ASGI app) run on the replica, and the
response packed back.

The proxy sends an :data:`~sluice.libs.serve.channel.HTTP` frame whose ``meta`` is
:func:`encode_request` of the ASGI scope and whose ``body`` is the raw request body; nothing
is pickled. The replica answers with :func:`call_http`:

- bytes: one whole response, :func:`encode_response` (status, headers, body), sent as OK;
- an async iterator (a ``StreamingResponse``, a generator ``__call__``, or an ASGI app that
  sends its body in parts): its first item is an encoded response holding the status, the
  headers and the first part of the body, every later item a raw body chunk (ITEM frames).

Return values become responses as in Ray Serve: ``str`` -> ``text/plain; charset=utf-8``,
``bytes`` -> ``text/plain``, ``None`` -> an empty ``text/plain`` body, anything else ->
compact JSON (``application/json``, FastAPI's ``jsonable_encoder`` for what ``json`` cannot
write), a starlette ``Response`` as itself.

>>> status, headers, body = decode_response(encode_response(201, [(b"x-a", b"1")], b"hi"))
>>> status, headers, bytes(body)
(201, [(b'x-a', b'1')], b'hi')
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from sluice.libs.serve.syncpool import run_sync

logger = logging.getLogger(__name__)

_VERSION = 1
_REQUEST = struct.Struct("<BHii")  # version, number of headers, client port, server port
_RESPONSE = struct.Struct("<HH")  # status, number of headers
_N_REQUEST_FIELDS = 10  # the strings of a request head before its headers, in _request_parts

ASGI_APP_ATTR = "__serve_asgi_app__"
"""The class attribute ``@serve.ingress(app)`` sets: the ASGI app (or a builder function
that returns one) serving the class's HTTP requests."""

_INSTANCE_KEY = "sluice.serve.instance"  # the scope entry holding the replica's user object
_Headers = list[tuple[bytes, bytes]]


# ---------------------------------------------------------------------------------- requests

def encode_request(scope: dict, root_path: str | None = None) -> bytes:
    """The head of the HTTP request ``scope`` (an ASGI scope) as bytes: method, scheme,
    HTTP version, path, raw path, root path (``root_path`` when given: the route prefix the
    proxy matched), query string, client and server addresses and headers (raw byte pairs).

    >>> meta = encode_request({"type": "http", "method": "GET", "path": "/a", "headers": []})
    >>> decode_scope(meta)["path"]
    '/a'
    """
    headers = scope.get("headers") or ()
    client = scope.get("client") or ("", -1)
    server = scope.get("server") or ("", -1)
    parts = [
        scope["method"].encode(), scope.get("scheme", "http").encode(),
        scope.get("http_version", "1.1").encode(),
        scope["path"].encode("utf-8", "surrogateescape"), scope.get("raw_path") or b"",
        (scope.get("root_path", "") if root_path is None else root_path).encode(),
        scope.get("query_string", b""), (client[0] or "").encode(), (server[0] or "").encode(),
        b"\x01" if scope.get("raw_path") is None else b"\x00",
    ]
    for name, value in headers:
        parts.append(name)
        parts.append(value)
    n = len(parts)
    return b"".join((_REQUEST.pack(_VERSION, len(headers), _port(client), _port(server)),
                     struct.pack(f"<{n}I", *map(len, parts)), *parts))


def _port(address: Any) -> int:
    port = address[1] if address else -1
    return -1 if port is None else int(port)


def decode_scope(meta: bytes) -> dict:
    """The ASGI ``http`` scope that :func:`encode_request` packed into ``meta``."""
    version, n_headers, client_port, server_port = _REQUEST.unpack_from(meta)
    if version != _VERSION:
        raise ValueError(f"HTTP request head of version {version}, this sluice reads version "
                         f"{_VERSION}: run the proxy and the replicas with the same sluice")
    n = _N_REQUEST_FIELDS + 2 * n_headers
    lengths = struct.unpack_from(f"<{n}I", meta, _REQUEST.size)
    at = _REQUEST.size + 4 * n
    parts = []
    for length in lengths:
        parts.append(meta[at:at + length])
        at += length
    (method, scheme, http_version, path, raw_path, root_path, query, client_host, server_host,
     no_raw_path) = parts[:_N_REQUEST_FIELDS]
    headers = [(parts[i], parts[i + 1]) for i in range(_N_REQUEST_FIELDS, n, 2)]
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version.decode(), "method": method.decode(),
        "scheme": scheme.decode(), "path": path.decode("utf-8", "surrogateescape"),
        "raw_path": None if no_raw_path == b"\x01" else raw_path,
        "root_path": root_path.decode(), "query_string": query, "headers": headers,
        "client": (client_host.decode(), client_port) if client_port >= 0 else None,
        "server": (server_host.decode(), server_port) if server_port >= 0 else None,
        "state": {},
    }


def body_receiver(body: bytes) -> Callable[[], Awaitable[dict]]:
    """An ASGI ``receive`` that gives ``body`` once, then waits until it is cancelled (the
    proxy cancels a request whose client disconnected, see the channel's CANCEL)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # nothing more comes: wait to be cancelled
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def decode_request(meta: bytes, body: bytes) -> Any:
    """The starlette ``Request`` a replica's ``__call__`` receives: the head in ``meta``
    (see :func:`encode_request`), ``body`` as its body."""
    from starlette.requests import Request

    return Request(decode_scope(meta), body_receiver(body))


# --------------------------------------------------------------------------------- responses

def encode_response(status: int, headers: Iterable[tuple[bytes, bytes]],
                    body: bytes = b"") -> bytes:
    """A response (or the head of a streamed one, with its first body part) as bytes."""
    flat: list[bytes] = []
    for name, value in headers:
        flat.append(name)
        flat.append(value)
    return b"".join((_RESPONSE.pack(status, len(flat) // 2),
                     struct.pack(f"<{len(flat)}I", *map(len, flat)), *flat, body))


def decode_response(data: bytes) -> tuple[int, _Headers, memoryview]:
    """``(status, headers, body)`` of an :func:`encode_response` result (body not copied)."""
    status, n_headers = _RESPONSE.unpack_from(data)
    lengths = struct.unpack_from(f"<{2 * n_headers}I", data, _RESPONSE.size)
    at = _RESPONSE.size + 8 * n_headers
    headers = []
    for i in range(0, 2 * n_headers, 2):
        name_end = at + lengths[i]
        value_end = name_end + lengths[i + 1]
        headers.append((data[at:name_end], data[name_end:value_end]))
        at = value_end
    return status, headers, memoryview(data)[at:]


def _content(body: bytes, content_type: bytes) -> bytes:
    return encode_response(200, ((b"content-type", content_type),
                                 (b"content-length", str(len(body)).encode())), body)


def encode_result(result: Any) -> bytes | None:
    """A return value of ``__call__`` as an encoded response, Ray Serve's way (see the module
    docstring); None for what must run as an ASGI app (a starlette ``Response`` that streams,
    serves a file or has background tasks)."""
    if isinstance(result, str):
        return _content(result.encode(), b"text/plain; charset=utf-8")
    if isinstance(result, (bytes, bytearray, memoryview)):
        return _content(bytes(result), b"text/plain")
    if result is None:
        return _content(b"", b"text/plain")
    from starlette.responses import Response

    if isinstance(result, Response):
        if type(result).__call__ is Response.__call__ and result.background is None:
            return encode_response(result.status_code, result.raw_headers, bytes(result.body))
        return None
    return _content(_json(result), b"application/json")


def _json(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        from fastapi.encoders import jsonable_encoder

        return json.dumps(jsonable_encoder(value), separators=(",", ":")).encode()


# ------------------------------------------------------------------------- running the user

def ingress(app: Any) -> Callable[[type], type]:
    """``@serve.ingress(app)``: the class's HTTP requests are served by ``app`` (a FastAPI
    app, any ASGI app, or a function returning one, called once per replica) instead of its
    ``__call__``. Methods of the class routed with ``@app.get(...)`` get the replica's
    instance as ``self``.

    >>> from fastapi import FastAPI
    >>> api = FastAPI()
    >>> @ingress(api)
    ... class Greeter:
    ...     @api.get("/hi")
    ...     def hi(self) -> str:
    ...         return "hello"
    >>> Greeter.__serve_asgi_app__ is api
    True
    """
    def decorate(cls: type) -> type:
        if not inspect.isclass(cls):
            raise TypeError(f"@serve.ingress decorates a class, not {cls!r}; wrap a function "
                            f"deployment's logic in a class with FastAPI routes")
        if "__call__" in vars(cls):
            raise TypeError(f"{cls.__qualname__} has both @serve.ingress and a __call__ method; "
                            f"HTTP requests go to the ingress app: remove __call__ or the "
                            f"decorator")
        _bind_class_routes(app, cls)
        setattr(cls, ASGI_APP_ATTR, app)
        return cls

    return decorate


def _bind_class_routes(app: Any, cls: type) -> None:
    """Make FastAPI routes whose endpoint is a method of ``cls`` receive the replica's user
    object as ``self`` (a dependency read from the request's scope), as Ray Serve does."""
    try:
        from fastapi import APIRouter, Depends
        from fastapi.routing import APIRoute
    except ImportError:  # not a FastAPI app: nothing to bind
        return
    if not isinstance(app, APIRouter) and not isinstance(getattr(app, "router", None), APIRouter):
        return
    router = app if isinstance(app, APIRouter) else app.router
    prefixes = tuple(base.__qualname__ + "." for base in cls.__mro__ if base is not object)
    routes = [r for r in router.routes
              if isinstance(r, APIRoute) and r.endpoint.__qualname__.startswith(prefixes)]
    if not routes:
        return
    from starlette.requests import HTTPConnection

    def servable(connection: Any) -> Any:  # annotated below: this module's are strings
        return connection.scope[_INSTANCE_KEY]

    servable.__annotations__ = {"connection": HTTPConnection}

    rebound = APIRouter()
    for route in routes:
        router.routes.remove(route)
        signature = inspect.signature(route.endpoint)
        params = list(signature.parameters.values())
        if not params:
            raise TypeError(f"{route.endpoint.__qualname__} is routed by @serve.ingress but takes "
                            f"no arguments; give it `self` as its first parameter")
        params = [params[0].replace(default=Depends(servable))] + [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[1:]]
        route.endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=params)
        rebound.routes.append(route)
    app.include_router(rebound)  # analyses the new signatures' dependencies again


_BUILT_ATTR = "__serve_asgi_built__"  # a builder's app, on the user object
_STATE_ATTR = "__serve_asgi_state__"  # the app's lifespan state, on the user object


def asgi_app_of(user_object: Any) -> Any | None:
    """The ASGI app serving ``user_object``'s HTTP requests, or None (it has ``__call__``)."""
    app = getattr(type(user_object), ASGI_APP_ATTR, None)
    if app is None:
        return None
    if inspect.isfunction(app):  # a builder: one app per replica, built on first use
        built = vars(user_object).get(_BUILT_ATTR)
        if built is None:
            built = app()
            setattr(user_object, _BUILT_ATTR, built)
        return built
    return app


async def start_ingress(user_object: Any) -> Callable[[], Awaitable[None]] | None:
    """Start ``user_object``'s ``@serve.ingress`` app on a replica that was just constructed:
    build it (a builder function's) and run its ASGI lifespan startup (FastAPI's
    ``lifespan=`` and startup handlers), so that a failing one fails the replica's start.
    Returns the coroutine function to await when the replica stops (lifespan shutdown), or
    None when the object has no ingress app. Requests then see the lifespan's state."""
    app = asgi_app_of(user_object)
    if app is None:
        return None
    state: dict = {}
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "state": state}

    async def run() -> None:
        try:
            await app(scope, inbox.get, outbox.put)
        finally:
            outbox.put_nowait(None)  # the app returned: it does not do lifespan, or is done

    task = asyncio.ensure_future(run())

    async def step(event: str) -> None:
        await inbox.put({"type": f"lifespan.{event}"})
        answer = await outbox.get()
        if answer is None:  # the app returned or raised: it does not run a lifespan
            await asyncio.gather(task, return_exceptions=True)
        elif answer["type"] == f"lifespan.{event}.failed":
            error = (await asyncio.gather(task, return_exceptions=True))[0]
            if isinstance(error, Exception):
                raise error  # the user's own error, as a raising constructor's
            raise RuntimeError(f"the ingress app's lifespan {event} failed: "
                               f"{answer.get('message', '')}")

    try:
        await step("startup")
    except BaseException:
        task.cancel()
        raise
    setattr(user_object, _STATE_ATTR, state)

    async def shutdown() -> None:
        if not task.done():
            await step("shutdown")
        await asyncio.gather(task, return_exceptions=True)

    return shutdown


async def call_http(user_object: Any, meta: bytes, body: bytes, *,
                    sync_in_thread: bool = False) -> bytes | AsyncIterator[bytes]:
    """Serve one HTTP request on a replica: the head ``meta`` (:func:`encode_request`) and
    ``body`` go to ``user_object(request)``, or to its ``@serve.ingress`` ASGI app; the
    response comes back as bytes (answer OK) or as an async iterator of parts (answer ITEM
    frames): see the module docstring. The user's errors propagate.

    A sync ``__call__`` (and a sync generator's steps) runs on the loop, as Ray Serve runs
    sync methods by default, or in a worker thread when ``sync_in_thread`` (Ray Serve's
    ``RAY_SERVE_RUN_SYNC_IN_THREADPOOL=1``), so a blocking call does not hold up the
    replica's other requests.
    """
    scope = decode_scope(meta)
    app = asgi_app_of(user_object)
    if app is not None:
        scope[_INSTANCE_KEY] = user_object
        state = vars(user_object).get(_STATE_ATTR)
        if state:
            scope["state"] = dict(state)  # each request a shallow copy, as uvicorn does
        return await run_asgi(app, scope, body)
    from starlette.requests import Request

    request = Request(scope, body_receiver(body))
    call = user_object.__call__
    in_thread = sync_in_thread and not (inspect.iscoroutinefunction(call)
                                        or inspect.isasyncgenfunction(call))
    result = await run_sync(call, request) if in_thread else call(request)
    if inspect.isawaitable(result):
        result = await result
    if inspect.isasyncgen(result) or inspect.isgenerator(result):
        return _generated(result, in_thread)
    encoded = encode_result(result)
    if encoded is not None:
        return encoded
    return await run_asgi(result, scope, body)  # a streaming or file response


_END = object()  # a sync generator's end (next()'s default)


def _chunk(item: Any) -> bytes:
    return item.encode() if isinstance(item, str) else bytes(item)


async def _generated(items: Any, in_thread: bool) -> AsyncIterator[bytes]:
    """A generator ``__call__``'s items as a streamed ``text/plain`` response."""
    yield encode_response(200, ((b"content-type", b"text/plain; charset=utf-8"),))
    if inspect.isasyncgen(items):
        async for item in items:
            yield _chunk(item)
        return
    while True:
        item = await run_sync(next, items, _END) if in_thread else next(items, _END)
        if item is _END:
            return
        yield _chunk(item)


_DONE = object()  # the app returned (the last message of an exchange's queue)
_detached: set[asyncio.Task] = set()  # apps still running after their response was sent
# (background tasks), held so the event loop does not drop them


class _Failed:
    """The app raised ``error`` (the last message of an exchange's queue)."""

    def __init__(self, error: BaseException):
        self.error = error


async def run_asgi(app: Any, scope: dict, body: bytes) -> bytes | AsyncIterator[bytes]:
    """Run the ASGI ``app`` on an http ``scope`` with ``body``: its response as bytes when it
    sends the body in one message, else as an async iterator of parts (head first). An
    error the app raises before its response is complete propagates."""
    messages: asyncio.Queue = asyncio.Queue(maxsize=16)  # a slow client holds back the app

    async def run() -> None:
        try:
            await app(scope, body_receiver(body), messages.put)
            end: Any = _DONE
        except Exception as exc:  # noqa: BLE001 - handed to the reader of the response
            end = _Failed(exc)
            if task in _detached:  # nobody reads it any more: a background task failed
                logger.error("a background task of %r failed", app, exc_info=exc)
        await messages.put(end)

    task = asyncio.ensure_future(run())
    try:
        start = await _next_message(messages)
        if start is _DONE:
            raise RuntimeError(f"the ASGI app {app!r} returned without sending a response")
        first = await _next_message(messages)
    except BaseException:
        task.cancel()
        raise
    if first is _DONE:
        return encode_response(start["status"], start.get("headers", ()))
    head = encode_response(start["status"], start.get("headers", ()), first.get("body", b""))
    if first.get("more_body", False):
        return _stream_parts(head, messages, task)
    if start["status"] >= 500:  # starlette's error middleware sends a 500, then raises:
        await _next_message(messages)  # raise the app's error, so the proxy names it
    else:
        _detach(task)
    return head


async def _next_message(messages: asyncio.Queue) -> Any:
    """The app's next message, or _DONE; raises the app's error."""
    message = await messages.get()
    if isinstance(message, _Failed):
        raise message.error
    return message


async def _stream_parts(head: bytes, messages: asyncio.Queue, task: asyncio.Task
                        ) -> AsyncIterator[bytes]:
    finished = False
    try:
        yield head
        while True:
            message = await _next_message(messages)
            if message is _DONE:
                finished = True
                return
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                finished = True
                _detach(task)
                return
    finally:
        if not finished:  # the request was cancelled, or the app failed
            task.cancel()


def _detach(task: asyncio.Task) -> None:
    if not task.done():
        _detached.add(task)
        task.add_done_callback(_detached.discard)
