"""Sync threads' channels (sluice/libs/serve/syncchannel.py) against a real channel server on
a Unix socket: answers reach the thread that asked whatever order they come in, timeouts and
cancels, and a replica that goes away."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.libs.serve.channel import OK, ChannelClosed, Frame, serve_channel
from sluice.libs.serve.syncchannel import SyncCall, SyncChannel

DEADLINE_S = 60
ROOT = Path(__file__).resolve().parents[3]


class Server:
    """A channel server on its own loop thread: ``sleep`` answers its body after that many
    milliseconds, ``hold`` waits until cancelled (``started``, then ``cancelled``, set)."""

    def __init__(self, path: Path):
        self.address = f"unix:{path}"
        self.loop = asyncio.new_event_loop()
        self.started, self.cancelled = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(serve_channel(self.address, self.handle, lambda exc: b"error"))

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE_S)

    async def handle(self, frame: Frame) -> bytes:
        if frame.method == "sleep":
            await asyncio.sleep(int(frame.body) / 1000)
            return frame.body
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b""

    def stop(self) -> None:
        if not self.thread.is_alive():
            return

        async def close() -> None:
            self.server.close()
            for task in asyncio.all_tasks():  # the connections' requests
                if task is not asyncio.current_task():
                    task.cancel()

        self.run(close())  # (connections stay open: a killed replica is test_channel's child)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE_S)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "r.sock")
    yield s
    s.stop()


def value(frame: Frame) -> bytes:
    assert frame.kind == OK
    return frame.body


def test_threads_sharing_a_channel_each_get_their_own_answer(server: Server) -> None:
    channel = SyncChannel(server.address)

    def ask(ms: int) -> bytes:  # later requests answer sooner: answers come out of order
        call = SyncCall(channel, channel.send("sleep", str(ms).encode()), lambda: None)
        return call.outcome(value, DEADLINE_S)

    delays = [40 - i for i in range(0, 40, 2)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, delays))
    assert answers == [str(ms).encode() for ms in delays]
    assert channel.in_flight == 0
    channel.close()


def test_a_timeout_leaves_the_answer_for_a_later_read_and_a_cancel_reaches_the_server(
        server: Server) -> None:
    channel = SyncChannel(server.address)
    slow = SyncCall(channel, channel.send("sleep", b"300"), lambda: None)
    with pytest.raises(TimeoutError):
        slow.outcome(value, 0.01)
    assert slow.outcome(value, DEADLINE_S) == b"300"
    held = SyncCall(channel, channel.send("hold", b""), lambda: None)
    assert channel.in_flight == 1
    assert server.started.wait(DEADLINE_S)  # (a cancel that comes first drops it unstarted)
    held.cancel()
    assert server.cancelled.wait(DEADLINE_S)
    with pytest.raises(concurrent.futures.CancelledError):
        held.outcome(value, DEADLINE_S)
    # the channel keeps working, and the answers of calls dropped unread are not kept
    for _ in range(50):  # fire and forget
        SyncCall(channel, channel.send("sleep", b"0"), lambda: None)
    assert channel.in_flight == 0  # the router counts them no more
    assert SyncCall(channel, channel.send("sleep", b"20"), lambda: None).outcome(
        value, DEADLINE_S) == b"20"
    assert channel._answers == {} and channel._wanted == set()
    channel.close()


def test_a_replica_killed_fails_the_waiting_call_and_refuses_new_ones(tmp_path: Path) -> None:
    address = f"unix:{tmp_path / 'child.sock'}"
    replica = subprocess.Popen([sys.executable, "-m", "tests.libs.serve.test_channel", address],
                               stdout=subprocess.PIPE, cwd=ROOT)  # test_channel's Echo replica
    try:
        assert replica.stdout.readline() == b"serving\n"
        channel = SyncChannel(address)
        broken = threading.Event()
        held = SyncCall(channel, channel.send("hang", b""), broken.set)
        waiting = concurrent.futures.ThreadPoolExecutor(1).submit(held.outcome, value, DEADLINE_S)
        replica.kill()  # SIGKILL while a call waits on it
        with pytest.raises(ChannelClosed):
            waiting.result(DEADLINE_S)
        assert broken.is_set() and channel.broken
        with pytest.raises(ConnectionError):
            channel.send("echo", b"1")
    finally:
        replica.kill()
        replica.wait(DEADLINE_S)


def test_an_unreachable_replica_raises_at_send(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        SyncChannel(f"unix:{tmp_path / 'nothing.sock'}").send("sleep", b"1")


def test_closing_lets_calls_in_flight_finish_and_refuses_new_ones(server: Server) -> None:
    channel = SyncChannel(server.address)  # (a replica that left the membership)
    sent = SyncCall(channel, channel.send("sleep", b"100"), lambda: None)
    channel.close()
    with pytest.raises(ConnectionError):
        channel.send("sleep", b"1")  # new calls go elsewhere
    assert sent.outcome(value, DEADLINE_S) == b"100" and channel.broken  # then it closed
    dead = SyncChannel(server.address)  # (a replica known dead): closed at once
    held = SyncCall(dead, dead.send("hold", b""), lambda: None)
    dead.close(now=True)
    with pytest.raises(ChannelClosed):
        held.outcome(value, DEADLINE_S)
