"""The router (sluice/libs/serve/router.py) over real sockets: the per-replica cap, the FIFO
queue and its limit, and replicas that died or cannot be reached."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from sluice.libs.serve.channel import CALL, Frame, serve_channel
from sluice.libs.serve.router import BackPressureError, ReplicaInfo, Router

DEADLINE_S = 60
ROOT = Path(__file__).resolve().parents[3]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE_S))


class Gate:
    """A replica whose ``hold`` calls wait until the test opens the gate; counts them."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.now = 0
        self.most = 0
        self.served = 0

    async def __call__(self, frame: Frame) -> bytes:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            if frame.method == "hold":
                await self.open.wait()
            self.served += 1
            return frame.body
        finally:
            self.now -= 1


async def until(check, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while not check():
        assert loop.time() < end, f"{what} did not happen"
        await asyncio.sleep(0.01)


async def gates(tmp_path: Path, n: int) -> tuple[list[Gate], list[ReplicaInfo]]:
    found, infos = [], []
    for i in range(n):
        gate = Gate()
        address = f"unix:{tmp_path / f'r{i}.sock'}"
        await serve_channel(address, gate, lambda exc: str(exc).encode())
        found.append(gate)
        infos.append(ReplicaInfo(f"app#D#{i}", address, max_ongoing_requests=2))
    return found, infos


def test_no_replica_gets_more_than_its_cap_and_the_rest_wait_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        replicas, infos = await gates(tmp_path, 2)
        router = Router("app#D")
        router.update(infos)
        calls = [asyncio.ensure_future(router.call(CALL, "hold", b"", str(i).encode()))
                 for i in range(7)]
        await until(lambda: sum(g.now for g in replicas) == 4, "4 calls running")
        assert [g.now for g in replicas] == [2, 2] and router.num_queued == 3
        for gate in replicas:
            gate.open.set()
        answers = await asyncio.gather(*calls)
        assert [a.body for a in answers] == [str(i).encode() for i in range(7)]
        assert max(g.most for g in replicas) == 2 and router.num_queued == 0
        router.close()

    run(main())


def test_past_max_queued_requests_a_call_fails_with_back_pressure(tmp_path: Path) -> None:
    async def main() -> None:
        (gate,), (info,) = await gates(tmp_path, 1)
        router = Router("app#D")
        router.update([ReplicaInfo(info.replica_id, info.address, max_ongoing_requests=1,
                                   max_queued_requests=1)])
        first = asyncio.ensure_future(router.call(CALL, "hold", b"", b"1"))
        second = asyncio.ensure_future(router.call(CALL, "hold", b"", b"2"))
        await until(lambda: gate.now == 1 and router.num_queued == 1, "one running, one queued")
        with pytest.raises(BackPressureError, match=r"max_queued_requests=1"):
            await router.call(CALL, "hold", b"", b"3")
        gate.open.set()
        assert [(await f).body for f in (first, second)] == [b"1", b"2"]
        router.close()

    run(main())


def test_a_replica_that_cannot_be_reached_is_dropped_and_calls_go_elsewhere(tmp_path: Path) -> None:
    async def main() -> None:
        (gate,), (info,) = await gates(tmp_path, 1)
        router = Router("app#D")
        nowhere = ReplicaInfo("app#D#gone", f"unix:{tmp_path / 'none.sock'}")
        router.update([nowhere, info])
        answers = []
        while not router.dead and len(answers) < 500:  # until a call was routed to it
            answers.append(await router.call(CALL, "echo", b"", b"x"))
        assert all(a.body == b"x" for a in answers) and gate.served == len(answers)
        assert router.dead == {"app#D#gone"}
        router.update([nowhere, info])  # a stale membership does not bring it back
        assert list(router.replicas) == [info.replica_id]
        router.close()

    run(main())


def test_a_killed_replica_is_never_routed_to_again(tmp_path: Path) -> None:
    async def main() -> None:
        addresses = [f"unix:{tmp_path / f'p{i}.sock'}" for i in range(2)]
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.libs.serve.test_channel", a,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT) for a in addresses]
        try:
            for proc in procs:
                assert await proc.stdout.readline() == b"serving\n"
            router = Router("app#D")
            router.update([ReplicaInfo(f"app#D#{i}", a) for i, a in enumerate(addresses)])
            for rep in router.replicas.values():  # connect both
                await rep.client.call(CALL, "echo", b"", b"")
            victim = router.replicas["app#D#0"]
            procs[0].kill()
            await until(lambda: victim.client.closed, "the channel to the killed replica broke")
            answers = [await router.call(CALL, "echo", b"m", b"b") for _ in range(20)]
            assert all(a.body == b"m|b" for a in answers)
            assert router.dead == {"app#D#0"} and list(router.replicas) == ["app#D#1"]
            router.close()
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()

    run(main())
