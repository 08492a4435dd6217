"""serve.start/serve.run with the HTTP proxy: real uvicorn, real HTTP, apps by route prefix."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import sluice
import sluice.serve as serve
from tests.libs.serve.helpers import free_port


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    sluice.init(num_cpus=8)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    sluice.shutdown()


@serve.deployment
class Model:
    def __call__(self, x: int) -> int:
        return x * 2


@serve.deployment
class Ingress:
    def __init__(self, model) -> None:
        self.model = model

    async def __call__(self, request) -> dict:
        x = int(request.query_params["x"])
        return {"doubled": await self.model.remote(x)}


def test_requests_reach_each_apps_ingress_by_route_prefix(port: int) -> None:
    serve.run(Ingress.bind(Model.bind()), name="math", route_prefix="/math")

    @serve.deployment
    def hello(request) -> str:
        return "hello"

    serve.run(hello.bind(), name="hi", route_prefix="/hi")
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/math?x=21", timeout=60).json() == {"doubled": 42}
    assert httpx.get(f"{base}/hi", timeout=60).text == "hello"
    missing = httpx.get(f"{base}/nowhere", timeout=60)
    assert missing.status_code == 404 and "/math" in missing.text
