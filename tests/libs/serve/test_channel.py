"""Direct channels (sluice/libs/serve/channel.py) over real Unix and TCP sockets."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from sluice.libs.serve.channel import (
    CALL,
    END,
    ERROR,
    ITEM,
    OK,
    ChannelClient,
    ChannelClosed,
    Frame,
    decode,
    encode,
    parse_address,
    serve_channel,
)

DEADLINE_S = 60
ROOT = Path(__file__).resolve().parents[3]


class Echo:
    """A replica-like handler: ``echo`` answers, ``count`` streams, ``fail`` raises,
    ``hang`` waits until cancelled (and records that it was)."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, frame: Frame):
        if frame.method == "echo":
            return frame.meta + b"|" + frame.body
        if frame.method == "count":
            return self._count(int(frame.body))
        if frame.method == "fail":
            raise ValueError("bad input 42")
        if frame.method == "hang":
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        raise AssertionError(frame.method)

    async def _count(self, n: int):
        for i in range(n):
            yield str(i).encode()


def error_body(exc: BaseException) -> bytes:
    return f"{type(exc).__name__}: {exc}".encode()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE_S))


@pytest.fixture(params=["unix", "tcp"])
def address(request, tmp_path: Path) -> str:
    if request.param == "unix":
        return f"unix:{tmp_path / 'r.sock'}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp:127.0.0.1:{s.getsockname()[1]}"


def test_frames_round_trip_and_addresses_are_checked() -> None:
    frame = Frame(2**40, CALL, "método", b"\x00meta", b"body" * 1000)
    assert decode(encode(frame)[4:]) == frame
    with pytest.raises(ValueError, match="'http://x' is not unix:PATH or tcp:HOST:PORT"):
        parse_address("http://x")


def test_calls_streams_and_errors_share_one_connection(address: str) -> None:
    async def main() -> None:
        server = await serve_channel(address, Echo(), error_body)
        client = ChannelClient(address)
        answers = await asyncio.gather(*(client.call(CALL, "echo", b"m%d" % i, b"b%d" % i)
                                         for i in range(50)))
        assert [(a.kind, a.body) for a in answers] == [(OK, b"m%d|b%d" % (i, i)) for i in range(50)]
        failed = await client.call(CALL, "fail", b"", b"")
        assert (failed.kind, failed.body) == (ERROR, b"ValueError: bad input 42")
        items = [f async for f in client.stream(CALL, "count", b"", b"3")]
        assert [(f.kind, f.body) for f in items] == [(ITEM, b"0"), (ITEM, b"1"), (ITEM, b"2"),
                                                     (END, b"")]
        assert client.ongoing == 0
        client.close()
        server.close()

    run(main())


def test_a_cancelled_call_cancels_the_replicas_coroutine(address: str) -> None:
    async def main() -> None:
        echo = Echo()
        server = await serve_channel(address, echo, error_body)
        client = ChannelClient(address)
        waiting = asyncio.ensure_future(client.call(CALL, "hang", b"", b""))
        await echo.started.wait()
        waiting.cancel()
        await echo.cancelled.wait()  # the replica saw the CANCEL
        assert (await client.call(CALL, "echo", b"a", b"b")).body == b"a|b"  # still usable
        client.close()
        server.close()

    run(main())


def test_a_replica_killed_fails_waiting_calls_and_later_ones(address: str) -> None:
    async def main() -> None:
        replica = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.libs.serve.test_channel", address,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        try:
            assert await replica.stdout.readline() == b"serving\n"
            client = ChannelClient(address)
            assert (await client.call(CALL, "echo", b"a", b"b")).body == b"a|b"
            waiting = asyncio.ensure_future(client.call(CALL, "hang", b"", b""))
            replica.kill()  # SIGKILL while a call waits on it
            with pytest.raises(ChannelClosed, match="broke"):
                await waiting
            assert client.closed
            with pytest.raises(ChannelClosed):
                await client.call(CALL, "echo", b"", b"")
        finally:
            if replica.returncode is None:
                replica.kill()
            await replica.wait()

    run(main())


def test_connecting_to_nothing_says_where(tmp_path: Path) -> None:
    async def main() -> None:
        client = ChannelClient(f"unix:{tmp_path / 'none.sock'}")
        with pytest.raises(ChannelClosed, match="cannot connect to unix:.*none.sock"):
            await client.call(CALL, "echo", b"", b"")

    run(main())


def test_an_error_that_does_not_encode_is_still_answered_by_its_text(tmp_path: Path) -> None:
    def picky(exc: BaseException) -> bytes:  # as pickle on a chain too deep for it
        if isinstance(exc, ValueError):
            raise RecursionError("maximum recursion depth exceeded while pickling an object")
        return f"{type(exc).__name__}: {exc}".encode()

    async def main() -> None:
        address = f"unix:{tmp_path / 'r.sock'}"
        server = await serve_channel(address, Echo(), picky)
        client = ChannelClient(address)
        failed = await client.call(CALL, "fail", b"", b"")
        assert (failed.kind, failed.body) == (ERROR, b"RuntimeError: ValueError: bad input 42")
        client.close()
        server.close()

    run(main())


if __name__ == "__main__":  # a replica in its own process, for the kill test
    async def serve_forever(address: str) -> None:
        await serve_channel(address, Echo(), error_body)
        print("serving", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve_forever(sys.argv[1]))
