"""The serving benchmark's client (benchmarks/serve_client.py) against a real uvicorn server
on loopback: every response framing a serving system may answer with is read, counted, and
never hangs the client."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from benchmarks.serve import free_port, wait_for_answer  # noqa: E402
from benchmarks.serve_client import measure, percentile  # noqa: E402


async def plain(request):
    return PlainTextResponse("ok")


async def chunked(request):
    async def parts():
        for part in (b"a" * 10, b"", b"b" * 5000, b"c"):
            yield part

    return StreamingResponse(parts())


async def empty(request):
    return Response(status_code=204)


async def failing(request):
    return PlainTextResponse("ValueError: bad", status_code=500)


@pytest.fixture(scope="module")
def port():
    app = Starlette(routes=[Route("/", plain), Route("/chunked", chunked),
                            Route("/empty", empty), Route("/fail", failing)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start within 60 s"
    yield port
    server.should_exit = True
    thread.join(timeout=30)


@pytest.mark.parametrize("path, non_200", [("/", 0), ("/chunked", 0), ("/empty", 40),
                                           ("/fail", 40)])
def test_client_reads_every_framing_and_counts_what_is_not_200(port, path, non_200):
    result = asyncio.run(measure(f"http://127.0.0.1:{port}{path}", connections=3, warmup=5,
                                 count=40))
    assert result["requests"] == 40 and result["connections"] == 3
    assert result["non_200"] == non_200
    assert 0 < result["p50_s"] <= result["p99_s"]
    assert result["rps"] == pytest.approx(40 / result["seconds"])


def test_wait_for_answer_polls_until_a_200(port):
    assert wait_for_answer(port, deadline_s=30) > 0
    nobody = free_port()
    with pytest.raises(TimeoutError, match=rf"port {nobody} gave no 200 within 0 s \(last: "):
        wait_for_answer(nobody, deadline_s=0.2)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) in (50.0, 51.0)
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
