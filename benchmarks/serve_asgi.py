"""The serving limit: a bare uvicorn + starlette app answering a no-op, in its own process.

``python -m benchmarks.serve_asgi --port PORT`` serves ``GET /`` -> ``ok`` (text/plain,
as a Ray Serve deployment returning a ``str`` answers) until stopped. No framework, no
routing to another process: what one uvicorn worker on this machine can answer with the
same client is the ceiling any serving system built on uvicorn can reach.
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def noop(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/", noop)])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_asgi",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # uvicorn's defaults (uvloop and httptools where installed, as Ray Serve's proxy uses).
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
