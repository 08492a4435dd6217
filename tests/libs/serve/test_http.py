"""The proxy<->replica HTTP codec (sluice/libs/serve/http.py) with real starlette and
FastAPI apps: what the user code sees of a request and what its return values become."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from sluice.libs.serve.http import (
    call_http,
    decode_request,
    decode_response,
    decode_scope,
    encode_request,
    ingress,
)

DEADLINE_S = 60


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE_S))


def scope(method="GET", path="/", query=b"", headers=(), root_path=""):
    return {"type": "http", "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": root_path,
            "query_string": query, "headers": list(headers), "client": ("10.0.0.7", 51000),
            "server": ("127.0.0.1", 8000)}


async def answer(user_object, request_scope=None, body=b"", **options):
    """(status, headers as a dict, body) of call_http, a stream joined."""
    out = await call_http(user_object, encode_request(request_scope or scope()), body, **options)
    if isinstance(out, bytes):
        status, headers, content = decode_response(out)
        return status, dict(headers), bytes(content)
    parts = [part async for part in out]
    status, headers, content = decode_response(parts[0])
    return status, dict(headers), bytes(content) + b"".join(parts[1:])


def test_a_request_head_round_trips_with_raw_headers_and_client() -> None:
    s = scope("POST", "/api/é x", b"a=1&b=%20", [(b"x-key", b"v\x80"), (b"x-key", b"w")], "/api")
    decoded = decode_scope(encode_request(s))
    for key in ("method", "scheme", "http_version", "path", "raw_path", "root_path",
                "query_string"):
        assert decoded[key] == s[key], key
    assert decoded["headers"] == s["headers"]
    assert decoded["client"] == ("10.0.0.7", 51000)
    assert decoded["server"] == ("127.0.0.1", 8000)
    assert decode_scope(encode_request(s, root_path="/other"))["root_path"] == "/other"
    bare = decode_scope(encode_request({"type": "http", "method": "GET", "path": "/"}))
    assert bare["client"] is None and bare["raw_path"] is None and bare["headers"] == []


def test_user_code_sees_body_query_and_headers() -> None:
    class Echo:
        async def __call__(self, request: Request):
            return {"method": request.method, "path": request.url.path,
                    "q": dict(request.query_params), "h": request.headers.get("x-token"),
                    "body": (await request.body()).decode(), "client": request.client.host}

    s = scope("PUT", "/echo", b"n=3&m=x", [(b"x-token", b"t1"), (b"host", b"example")])
    status, headers, body = run(answer(Echo(), s, b"payload"))
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert json.loads(body) == {"method": "PUT", "path": "/echo", "q": {"n": "3", "m": "x"},
                                "h": "t1", "body": "payload", "client": "10.0.0.7"}
    request = decode_request(encode_request(s), b"xyz")
    assert request.url == "http://example/echo?n=3&m=x"


@pytest.mark.parametrize("value, content_type, body", [
    ("héllo", b"text/plain; charset=utf-8", "héllo".encode()),
    (b"\x00raw", b"text/plain", b"\x00raw"),  # as Ray Serve: bytes are text/plain
    (None, b"text/plain", b""),
    ({"a": [1, 2.5, None]}, b"application/json", b'{"a":[1,2.5,null]}'),
    ([1, "x"], b"application/json", b'[1,"x"]'),
])
def test_return_values_become_responses_as_in_ray_serve(value, content_type, body) -> None:
    class Model:
        def __call__(self, request):  # a sync __call__
            return value

    status, headers, content = run(answer(Model()))
    assert (status, headers[b"content-type"], content) == (200, content_type, body)
    assert headers[b"content-length"] == str(len(body)).encode()


def test_json_falls_back_to_fastapis_encoder() -> None:
    import datetime

    class Model:
        async def __call__(self, request):
            return {"when": datetime.date(2026, 1, 2), "tags": {"a"}}

    assert json.loads(run(answer(Model()))[2]) == {"when": "2026-01-02", "tags": ["a"]}


def test_starlette_responses_keep_status_headers_and_media_type() -> None:
    responses = [Response(b"gone", status_code=410, headers={"x-why": "old"}),
                 JSONResponse({"k": 1}, status_code=201), PlainTextResponse("p")]

    class Model:
        def __init__(self):
            self.next = iter(responses)

        async def __call__(self, request):
            return next(self.next)

    model = Model()
    status, headers, body = run(answer(model))
    assert (status, headers[b"x-why"], body) == (410, b"old", b"gone")
    status, headers, body = run(answer(model))
    assert (status, headers[b"content-type"], body) == (201, b"application/json", b'{"k":1}')
    assert run(answer(model))[1][b"content-type"] == b"text/plain; charset=utf-8"


def test_a_streaming_response_comes_as_head_then_chunks() -> None:
    class Streamer:
        async def __call__(self, request):
            async def chunks():
                for i in range(3):
                    yield f"part{i};"

            return StreamingResponse(chunks(), status_code=206, media_type="text/event-stream")

    async def main():
        out = await call_http(Streamer(), encode_request(scope()), b"")
        assert not isinstance(out, bytes)
        parts = [part async for part in out]
        status, headers, first = decode_response(parts[0])
        assert status == 206
        assert dict(headers)[b"content-type"] == b"text/event-stream; charset=utf-8"
        assert bytes(first) + b"".join(parts[1:]) == b"part0;part1;part2;"
        assert len(parts) >= 3  # streamed, not gathered into one answer

    run(main())


def test_a_generator_call_streams_text() -> None:
    class Gen:
        def __call__(self, request):
            for word in ("a", "b"):
                yield word

    assert run(answer(Gen()))[2] == b"ab"


def test_a_response_with_a_background_task_answers_and_runs_it() -> None:
    from starlette.background import BackgroundTask

    ran = []

    class Model:
        async def __call__(self, request):
            return PlainTextResponse("now", background=BackgroundTask(ran.append, 1))

    async def main():
        assert (await answer(Model()))[2] == b"now"
        while not ran:
            await asyncio.sleep(0.01)  # polled: the task runs after the response

    run(main())


def test_user_errors_propagate() -> None:
    class Broken:
        async def __call__(self, request):
            raise KeyError("no model 7")

    with pytest.raises(KeyError, match="no model 7"):
        run(answer(Broken()))


def make_fastapi_ingress():
    api = FastAPI()

    @ingress(api)
    class Api:
        def __init__(self, greeting):
            self.greeting = greeting

        @api.get("/hi/{name}")
        def hi(self, name: str, times: int = 1) -> str:
            return f"{self.greeting} {name}" * times

        @api.post("/items")
        async def add(self, item: dict) -> dict:
            return {"stored": item, "by": self.greeting}

        @api.get("/fail")
        def fail(self):
            raise ZeroDivisionError("division by zero in fail")

        @api.get("/stream")
        def stream(self):
            return StreamingResponse(iter([b"x", b"y"]))

    return Api


def test_fastapi_ingress_routes_get_the_instance_as_self() -> None:
    api = make_fastapi_ingress()("hello")
    status, _, body = run(answer(api, scope(path="/hi/ann", query=b"times=2")))
    assert (status, json.loads(body)) == (200, "hello annhello ann")
    post = scope("POST", "/items", headers=[(b"content-type", b"application/json")])
    assert json.loads(run(answer(api, post, b'{"n": 1}'))[2]) == {"stored": {"n": 1}, "by": "hello"}
    # a route prefix the proxy matched arrives as root_path: routes are below it
    assert run(answer(api, scope(path="/app/hi/bo", root_path="/app")))[2] == b'"hello bo"'
    assert run(answer(api, scope(path="/nowhere")))[0] == 404
    assert run(answer(api, scope(path="/hi/x", query=b"times=many")))[0] == 422
    assert run(answer(api, scope(path="/stream")))[2] == b"xy"


def test_fastapi_ingress_errors_propagate_with_their_type() -> None:
    api = make_fastapi_ingress()("hello")
    with pytest.raises(ZeroDivisionError, match="division by zero in fail"):
        run(answer(api, scope(path="/fail")))


def test_an_ingress_builder_function_makes_one_app_per_replica() -> None:
    built = []

    def build():
        app = FastAPI()

        @app.get("/")
        def root():
            return {"app": len(built)}

        built.append(app)
        return app

    @ingress(build)
    class Wrapped:
        pass

    one, two = Wrapped(), Wrapped()
    assert run(answer(one))[2] == b'{"app":1}'
    assert run(answer(one))[2] == b'{"app":1}'
    assert run(answer(two))[2] == b'{"app":2}'


def test_ingress_refuses_a_class_with_call_and_a_non_class() -> None:
    with pytest.raises(TypeError, match="both @serve.ingress and a __call__"):
        @ingress(FastAPI())
        class Both:
            def __call__(self, request):
                return ""
    with pytest.raises(TypeError, match="decorates a class"):
        ingress(FastAPI())(lambda request: "")


def test_a_sync_call_runs_in_a_thread_when_asked_so_the_loop_keeps_serving() -> None:
    import threading

    class Blocking:
        def __init__(self):
            self.started, self.release = threading.Event(), threading.Event()

        def __call__(self, request):
            if request.url.path == "/block":
                self.started.set()  # then blocks its thread, not the replica's loop
                return "released" if self.release.wait(DEADLINE_S) else "never released"
            self.release.set()
            return threading.current_thread() is not threading.main_thread()

    async def main():
        model = Blocking()
        blocked = asyncio.ensure_future(answer(model, scope(path="/block"), sync_in_thread=True))
        await asyncio.to_thread(model.started.wait, DEADLINE_S)
        assert (await answer(model, scope(path="/free"), sync_in_thread=True))[2] == b"true"
        assert (await blocked)[2] == b"released"
        # by default (as Ray Serve's) on the loop's own thread
        on_loop = await call_http(model, encode_request(scope(path="/x")), b"")
        assert bytes(decode_response(on_loop)[2]) == b"false"

    run(main())


def test_start_ingress_runs_the_apps_lifespan_and_requests_see_its_state() -> None:
    from contextlib import asynccontextmanager

    events = []

    @asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield {"model": "weights-v1"}
        events.append("shutdown")

    api = FastAPI(lifespan=lifespan)

    @ingress(api)
    class Served:
        @api.get("/model")
        async def model(self, request: Request):
            return request.state.model

    async def main():
        from sluice.libs.serve.http import start_ingress

        served = Served()
        shutdown = await start_ingress(served)
        assert events == ["startup"]
        assert (await answer(served, scope(path="/model")))[2] == b'"weights-v1"'
        await shutdown()
        assert events == ["startup", "shutdown"]
        assert await start_ingress(object()) is None  # no ingress app: nothing to start

        class PlainASGI:  # knows http only (a function would be a builder, as in Ray)
            async def __call__(self, scope, receive, send):
                assert scope["type"] == "http"

        @ingress(PlainASGI())
        class Plain:
            pass

        stop = await start_ingress(Plain())  # no lifespan to run: starts all the same
        await stop()

    run(main())


def test_a_failing_lifespan_startup_fails_start_ingress() -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        raise OSError("weights file missing")
        yield

    api = FastAPI(lifespan=lifespan)

    @ingress(api)
    class Served:
        pass

    async def main():
        from sluice.libs.serve.http import start_ingress

        with pytest.raises(OSError, match="weights file missing"):
            await start_ingress(Served())

    run(main())


def test_sync_calls_run_in_worker_threads_concurrently_and_raise_their_errors() -> None:
    import threading

    from sluice.libs.serve.syncpool import run_sync

    both_in = threading.Barrier(2)

    def meet(x: int) -> tuple[int, str]:
        both_in.wait(timeout=30)  # returns only while the other call runs too
        return x, threading.current_thread().name

    def fail() -> None:
        raise StopIteration("not a generator")

    async def main():
        loop_thread = threading.current_thread().name
        answers = await asyncio.gather(run_sync(meet, 1), run_sync(meet, 2))
        assert [x for x, _ in answers] == [1, 2]
        assert all(name != loop_thread for _, name in answers)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await run_sync(fail)
        assert await run_sync(sum, [3, 4]) == 7

    asyncio.run(main())
