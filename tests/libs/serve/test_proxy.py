"""The HTTP proxy (sluice/libs/serve/proxy.py): real uvicorn on loopback, real HTTP from
httpx and raw sockets, replicas behind real channel servers running sluice.serve's
``call_http`` on user objects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import Response, StreamingResponse

from sluice.libs.serve.channel import HTTP, ChannelClient, serve_channel
from sluice.libs.serve.codec import error_body
from sluice.libs.serve.http import call_http, ingress
from sluice.libs.serve.proxy import ProxyApp, ProxyServer, _CoalescedWrites

DEADLINE_S = 60


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE_S))


@dataclass(frozen=True)
class Info:
    """Stands for router.ReplicaInfo: what the proxy passes from the route source to a router."""

    replica_id: str
    address: str
    node_id: str = "local"
    max_ongoing_requests: int = 5


class BackPressureError(Exception):
    """Ray's name for a router over its max_queued_requests."""


class StaticRoutes:
    """A route source whose routes and replicas never change (version 1)."""

    def __init__(self, routes: dict, replicas: dict):
        self.routes, self.replicas = routes, replicas

    async def listen_routes(self, known_version: int):
        if known_version == 1:
            await asyncio.Event().wait()  # a long poll that never sees a change
        return 1, self.routes

    async def listen_replicas(self, deployment_id: str, known_version: int):
        if known_version == 1:
            await asyncio.Event().wait()
        return 1, self.replicas[deployment_id]


class FirstReplica:
    """A router standing in for router.Router: every request to the first replica, over a
    real channel; a deployment named ``full`` is always over its queue limit."""

    def __init__(self, deployment_id: str):
        self.deployment_id = deployment_id
        self.client: ChannelClient | None = None
        self.known = asyncio.Event()

    def update(self, replicas: list) -> None:
        self.client = ChannelClient(replicas[0].address) if replicas else None
        self.known.set()

    async def stream(self, kind, method, meta, body):
        if self.deployment_id.endswith("#full"):
            raise BackPressureError(f"{self.deployment_id} has 3 requests queued, its "
                                    f"max_queued_requests")
        await self.known.wait()
        async for frame in self.client.stream(kind, method, meta, body):
            yield frame


class Replica:
    """A replica's HTTP side: a channel server answering with ``call_http(user_object)``."""

    def __init__(self, user_object, path: Path):
        self.user_object = user_object
        self.address = f"unix:{path}"
        self.server = None

    async def handle(self, frame):
        assert frame.kind == HTTP
        return await call_http(self.user_object, frame.meta, frame.body)

    async def start(self) -> Replica:
        self.server = await serve_channel(self.address, self.handle, error_body)
        return self


@contextlib.asynccontextmanager
async def proxy(apps: dict, tmp_path: Path, root_path: str = ""):
    """A proxy serving ``{route_prefix: (app_name, user_object)}``; yields its base URL."""
    routes, replicas = {}, {}
    for i, (prefix, (app, user_object)) in enumerate(apps.items()):
        deployment_id = f"{app}#{'full' if user_object is None else 'D'}"
        replica = await Replica(user_object, tmp_path / f"r{i}.sock").start()
        routes[prefix] = (app, deployment_id)
        replicas[deployment_id] = [Info(f"{app}-r{i}", replica.address)]
    server = ProxyServer(ProxyApp(StaticRoutes(routes, replicas), FirstReplica), "127.0.0.1", 0,
                         root_path=root_path)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, server.start)
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as client:
            while (await client.get("/-/routes")).json() != {p: a for p, (a, _) in apps.items()}:
                await asyncio.sleep(0.01)  # polled: the first long poll answers at once
        yield base
    finally:
        await loop.run_in_executor(None, server.stop)


class Shop:
    """A user class answering by path with each kind of return value."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, request):
        self.calls += 1
        kind = request.url.path.rsplit("/", 1)[-1]
        if kind == "text":
            return "héllo"
        if kind == "bytes":
            return b"\x00\x01"
        if kind == "json":
            return {"n": self.calls}
        if kind == "response":
            return Response("teapot", status_code=418, headers={"x-kind": "response"})
        if kind == "stream":
            async def chunks():
                for i in range(3):
                    yield f"{i},".encode()
            return StreamingResponse(chunks(), media_type="text/csv")
        if kind == "echo":
            return {"method": request.method, "query": dict(request.query_params),
                    "header": request.headers.get("x-token"),
                    "body": (await request.body()).decode(),
                    "root_path": request.scope["root_path"], "path": request.url.path}
        if kind == "digest":
            return hashlib.sha256(await request.body()).hexdigest()
        if kind == "breaks":
            async def breaking():
                yield b"first,"
                raise RuntimeError("stream broke")
            return StreamingResponse(breaking())
        if kind == "full":  # a replica may refuse a request too
            raise BackPressureError("the replica has 5 requests ongoing")
        if kind == "fail":
            raise ValueError(f"bad input {request.query_params.get('n')}")
        return Response(status_code=400)


def test_return_values_and_requests_through_the_proxy(tmp_path: Path) -> None:
    async def main():
        async with proxy({"/shop": ("shop", Shop())}, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                r = await c.get("/shop/text")
                assert (r.status_code, r.headers["content-type"], r.text) == (
                    200, "text/plain; charset=utf-8", "héllo")
                r = await c.get("/shop/bytes")
                assert (r.headers["content-type"], r.content) == ("text/plain", b"\x00\x01")
                assert (await c.get("/shop/json")).json() == {"n": 3}
                r = await c.get("/shop/response")
                assert (r.status_code, r.headers["x-kind"], r.text) == (418, "response", "teapot")
                r = await c.get("/shop/stream")
                assert (r.headers["content-type"], r.text) == ("text/csv; charset=utf-8", "0,1,2,")
                r = await c.post("/shop/echo?a=1&b=two", content=b"the body",
                                 headers={"x-token": "secret"})
                assert r.json() == {"method": "POST", "query": {"a": "1", "b": "two"},
                                    "header": "secret", "body": "the body",
                                    "root_path": "/shop", "path": "/shop/echo"}
                big = bytes(range(256)) * 4096  # a 1 MiB body arrives whole
                r = await c.put("/shop/digest", content=big)
                assert r.text == hashlib.sha256(big).hexdigest()

    run(main())


class RecordingTransport(asyncio.Transport):
    """A transport that records each write: what the socket would be asked to send."""

    def __init__(self):
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_write_buffer_size(self):
        return 0


def test_a_response_head_goes_out_with_its_body_in_one_write() -> None:
    async def main():
        transport = RecordingTransport()
        writes = _CoalescedWrites(transport, asyncio.get_running_loop())
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        writes.write(head)
        assert transport.writes == []  # the head waits for its body
        writes.write(b"ok")
        assert transport.writes == [head + b"ok"]
        # a stream's head with no body yet goes out at the end of the loop's step
        writes.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await asyncio.sleep(0)
        assert transport.writes[-1].startswith(b"HTTP/1.1 200 OK\r\ntransfer-encoding")
        writes.write(b"3\r\nabc\r\n")  # a chunk passes straight through
        assert transport.writes[-1] == b"3\r\nabc\r\n" and len(transport.writes) == 3
        writes.write(head)
        writes.close()  # a held head is sent before the connection closes
        assert (transport.writes[-1], transport.closed) == (head, True)
        assert writes.get_write_buffer_size() == 0  # the rest is the transport's own

    run(main())


def test_a_proxy_mounted_at_a_root_path_routes_below_it(tmp_path: Path) -> None:
    async def main():
        async with proxy({"/shop": ("shop", Shop())}, tmp_path, root_path="/gw") as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                # as a reverse proxy in front passes /gw/shop/echo on, without its /gw
                r = await c.get("/shop/echo")
                assert (r.json()["root_path"], r.json()["path"]) == ("/gw/shop", "/gw/shop/echo")

    run(main())


def test_a_raising_replica_gives_500_naming_the_error_and_the_proxy_keeps_serving(
        tmp_path: Path) -> None:
    async def main():
        async with proxy({"/": ("shop", Shop())}, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                r = await c.get("/fail?n=7")
                assert (r.status_code, r.text) == (500, "ValueError: bad input 7")
                assert (await c.get("/text")).text == "héllo"
                # a stream that fails after its head: the response is cut short
                with pytest.raises(httpx.RemoteProtocolError):
                    await c.get("/breaks")
                assert (await c.get("/text")).text == "héllo"

    run(main())


def test_fastapi_ingress_behind_a_route_prefix(tmp_path: Path) -> None:
    api = FastAPI()

    @ingress(api)
    class Greeter:
        def __init__(self):
            self.greeting = "hi"

        @api.get("/greet/{name}")
        def greet(self, name: str) -> dict:
            return {"text": f"{self.greeting} {name}"}

        @api.get("/crash")
        async def crash(self):
            raise LookupError("no such greeting")

    async def main():
        async with proxy({"/api": ("greeter", Greeter())}, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                assert (await c.get("/api/greet/ada")).json() == {"text": "hi ada"}
                assert (await c.get("/api/none")).status_code == 404  # FastAPI's own 404
                r = await c.get("/api/crash")
                assert (r.status_code, r.text) == (500, "LookupError: no such greeting")
                assert (await c.get("/api/greet/bo")).status_code == 200

    run(main())


class Named:
    def __init__(self, name):
        self.name = name

    def __call__(self, request):
        return f"{self.name} {request.url.path}"


def test_longest_prefix_routing_and_404_naming_the_prefixes(tmp_path: Path) -> None:
    async def main():
        apps = {"/a": ("outer", Named("outer")), "/a/b": ("inner", Named("inner"))}
        async with proxy(apps, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                assert (await c.get("/a/b/c")).text == "inner /a/b/c"
                assert (await c.get("/a/b")).text == "inner /a/b"
                assert (await c.get("/a/bc")).text == "outer /a/bc"
                assert (await c.get("/a")).text == "outer /a"
                r = await c.get("/ab")
                assert r.status_code == 404
                assert r.text == "Path '/ab' not found; the route prefixes served are '/a', '/a/b'"

    run(main())


def test_a_router_over_its_queue_limit_gives_503(tmp_path: Path) -> None:
    async def main():
        async with proxy({"/": ("busy", None)}, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                r = await c.get("/")
                assert r.status_code == 503
                assert r.text == ("BackPressureError: busy#full has 3 requests queued, its "
                                  "max_queued_requests")

    run(main())


def test_a_replica_refusing_with_back_pressure_gives_503(tmp_path: Path) -> None:
    async def main():
        async with proxy({"/": ("shop", Shop())}, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                r = await c.get("/full")
                assert (r.status_code, r.text) == (
                    503, "BackPressureError: the replica has 5 requests ongoing")

    run(main())


class Hanging:
    """Waits until cancelled and records it (on the replica's side of the channel)."""

    def __init__(self):
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self, request):
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def test_a_client_that_disconnects_cancels_the_replicas_coroutine(tmp_path: Path) -> None:
    async def main():
        hanging = Hanging()
        async with proxy({"/": ("hang", hanging), "/ok": ("ok", Named("ok"))}, tmp_path) as base:
            port = int(base.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            await hanging.started.wait()
            writer.close()  # the client goes away while the replica works on its request
            await hanging.cancelled.wait()
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                assert (await c.get("/ok")).text == "ok /ok"

    run(main())


class EndlessStream:
    """Streams until its client goes away; records that its generator was closed."""

    def __init__(self):
        self.streaming = asyncio.Event()
        self.closed = asyncio.Event()

    async def __call__(self, request):
        async def chunks():
            try:
                while True:
                    self.streaming.set()
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                self.closed.set()

        return StreamingResponse(chunks())


def test_a_client_that_leaves_a_stream_stops_the_replicas_generator(tmp_path: Path) -> None:
    async def main():
        endless = EndlessStream()
        async with proxy({"/": ("ticks", endless)}, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as c:
                async with c.stream("GET", "/ticks") as r:
                    async for line in r.aiter_lines():
                        assert line == "tick"
                        break  # leaves with the stream still going
            await endless.closed.wait()

    run(main())


class ChangingRoutes(StaticRoutes):
    """A route source whose route table the test changes (long polls answer the change)."""

    def __init__(self, routes: dict, replicas: dict):
        super().__init__(routes, replicas)
        self.version = 1
        self.changed: asyncio.Event | None = None  # made on the proxy's loop

    async def listen_routes(self, known_version: int):
        while known_version == self.version:
            self.changed = self.changed or asyncio.Event()
            await self.changed.wait()
            self.changed = None
        return self.version, self.routes

    def change(self, routes: dict) -> None:  # runs on the proxy's loop
        self.routes, self.version = routes, self.version + 1
        if self.changed is not None:
            self.changed.set()


def test_the_route_table_follows_the_long_poll(tmp_path: Path) -> None:
    routers = []

    def make_router(deployment_id):
        routers.append(FirstReplica(deployment_id))
        return routers[-1]

    async def main():
        one = await Replica(Named("one"), tmp_path / "1.sock").start()
        two = await Replica(Named("two"), tmp_path / "2.sock").start()
        source = ChangingRoutes({"/one": ("one", "one#D")},
                                {"one#D": [Info("r1", one.address)],
                                 "two#D": [Info("r2", two.address)]})
        server = ProxyServer(ProxyApp(source, make_router), "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, server.start)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=DEADLINE_S) as c:
                while (await c.get("/-/routes")).json() != {"/one": "one"}:
                    await asyncio.sleep(0.01)  # polled: the first long poll answers at once
                assert (await c.get("/one/x")).text == "one /one/x"
                server.loop.call_soon_threadsafe(source.change, {"/two": ("two", "two#D")})
                while (await c.get("/-/routes")).json() != {"/two": "two"}:
                    await asyncio.sleep(0.01)
                assert (await c.get("/two/y")).text == "two /two/y"
                r = await c.get("/one/x")
                assert (r.status_code, r.text) == (
                    404, "Path '/one/x' not found; the route prefixes served are '/two'")
            assert [r.deployment_id for r in routers] == ["one#D", "two#D"]
            assert routers[0].client is None  # the removed app's router was told: no replicas
        finally:
            await loop.run_in_executor(None, server.stop)

    run(main())


def test_a_port_in_use_fails_at_start_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ProxyServer(ProxyApp(StaticRoutes({}, {}), FirstReplica), "127.0.0.1", port)
        with pytest.raises(OSError, match=f"HTTP port {port} on 127.0.0.1 is already in use; "
                                          "stop what listens there or give serve another one"):
            server.start()


def test_no_application_gives_404_saying_so(tmp_path: Path) -> None:
    async def main():
        server = ProxyServer(ProxyApp(StaticRoutes({}, {}), FirstReplica), "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, server.start)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=DEADLINE_S) as c:
                r = await c.get("/x")
                assert (r.status_code, r.text) == (
                    404, "Path '/x' not found: no application is running; deploy one with "
                         "serve.run(app, route_prefix=...)")
                assert (await c.get("/-/healthz")).text == "success"
        finally:
            await loop.run_in_executor(None, server.stop)

    run(main())


# ------------------------------------------------------------------ the HTTPProxy actor

class RoutesActor:
    """Stands for the controller: its two long polls, over one app at ``/``."""

    def __init__(self, address: str):
        self.address = address

    async def listen_routes(self, known_version: int):
        if known_version == 1:
            await asyncio.sleep(30)  # a long poll that sees no change
        return 1, {"/": ("app", "app#D")}

    async def listen_replicas(self, deployment_id: str, known_version: int):
        if known_version == 1:
            await asyncio.sleep(30)
        return 1, [Info("app-r0", self.address)]


@contextlib.contextmanager
def replica_thread(user_object, path: Path):
    """A replica's channel server on an event loop in a thread of the driver."""
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    replica = asyncio.run_coroutine_threadsafe(Replica(user_object, path).start(), loop).result()
    try:
        yield replica
    finally:
        loop.call_soon_threadsafe(replica.server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def test_the_proxy_actor_serves_its_controllers_routes_and_names_a_port_in_use(
        tmp_path: Path) -> None:
    import sluice
    from sluice.libs.serve.proxy import HTTPProxy

    sluice.init(num_cpus=2)
    try:
        with replica_thread(Named("via actor"), tmp_path / "r.sock") as replica:
            routes = sluice.remote(RoutesActor).remote(replica.address)
            Proxy = sluice.remote(HTTPProxy)
            first = Proxy.remote("127.0.0.1", 0, controller=routes, make_router=FirstReplica)
            host, port = sluice.get(first.ready.remote())
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=DEADLINE_S) as c:
                assert sluice.get(first.wait_for_routes.remote(1)) == 1
                assert sluice.get(first.routes.remote()) == {"/": "app"}
                assert c.get("/x").text == "via actor /x"
            second = Proxy.remote("127.0.0.1", port, controller=routes, make_router=FirstReplica)
            with pytest.raises(OSError, match=f"HTTP port {port} on 127.0.0.1 is already in use"):
                sluice.get(second.ready.remote())
            sluice.get(first.shutdown.remote())
    finally:
        sluice.shutdown()
