"""The lean keep-alive HTTP client every serving system is measured with.

``python -m benchmarks.serve_client URL [--connections 8] [--warmup 200] [--count 2000]``
opens ``--connections`` HTTP/1.1 keep-alive connections, keeps one request in flight on
each (so 8 in flight by default), sends ``--warmup`` untimed requests, then ``--count``
timed ones, and prints one JSON line: requests/s over the timed part, p50/p90/p99 latency
in seconds, and the count of non-200 answers.

It runs in a process of its own, the same program for every system, so nothing a system
does in its driver shares the client's interpreter. It is a plain ``asyncio.Protocol`` (on
uvloop when installed, for every system alike): one pre-built request, a response parser
that reads the status line, ``Content-Length`` or chunked bodies, and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done: asyncio.Future[int] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = self._parse()
        if status is not None and self.done is not None and not self.done.done():
            self.done.set_result(status)

    def _parse(self) -> int | None:
        """The status of one complete response at the buffer's start (consumed), or None."""
        buffer = self.buffer
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(buffer[:head_end]).lower()
        status = int(head[9:12])
        body_start = head_end + 4
        length_at = head.find(b"\r\ncontent-length:")
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at + 2)
            length = int(head[length_at + 17: line_end if line_end >= 0 else None])
            if len(buffer) < body_start + length:
                return None
            del buffer[:body_start + length]
            return status
        if b"\r\ntransfer-encoding: chunked" in head:
            at = body_start
            while True:
                size_end = buffer.find(b"\r\n", at)
                if size_end < 0:
                    return None
                size = int(bytes(buffer[at:size_end]).split(b";")[0], 16)
                at = size_end + 2 + size + 2
                if len(buffer) < at:
                    return None
                if size == 0:
                    del buffer[:at]
                    return status
        del buffer[:body_start]  # no body (204, 304)
        return status

    async def send(self) -> int:
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(self.request)
        return await self.done


async def _worker(conn: _Connection, counter: list[int], limit: int,
                  latencies: list[float], bad: list[int]) -> None:
    while counter[0] < limit:
        counter[0] += 1
        start = time.perf_counter()
        status = await conn.send()
        latencies.append(time.perf_counter() - start)
        if status != 200:
            bad[0] += 1


async def _phase(conns: list[_Connection], count: int) -> tuple[float, list[float], int]:
    counter, bad = [0], [0]
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_worker(c, counter, count, latencies, bad) for c in conns))
    return time.perf_counter() - start, latencies, bad[0]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank.

    >>> percentile([3.0, 1.0, 2.0], 0.5)
    2.0
    """
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(url: str, connections: int = 8, warmup: int = 200, count: int = 2000) -> dict:
    """Warm up, then time ``count`` GET requests to ``url`` over ``connections`` connections."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Connection: keep-alive\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Connection(request), host, port)
        conns.append(conn)
    try:
        await _phase(conns, warmup)
        seconds, latencies, bad = await _phase(conns, count)
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    return {"requests": count, "connections": connections, "seconds": seconds,
            "rps": count / seconds, "p50_s": percentile(latencies, 0.5),
            "p90_s": percentile(latencies, 0.9), "p99_s": percentile(latencies, 0.99),
            "non_200": bad}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_client",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    work = measure(args.url, args.connections, args.warmup, args.count)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(work)
    else:
        result = uvloop.run(work)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
