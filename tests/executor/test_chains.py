"""Forwarded actor chains (executor/chains.py, chain_table.py, chain_driver.py) on real actors.

Most tests submit chains with the runtime's ``submit_actor_chain`` directly; the
threaded one runs a compiled Plan, the way users reach it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sluice
from sluice.exceptions import ActorDiedError, TaskError
from sluice.executor import api, context
from sluice.executor.chains import (
    CHAIN_DIR_PREFIX,
    CHAIN_INLINE_MAX,
    cleanup_stale_chain_dirs,
    pack_hop_args,
)
from tests.executor.helpers import current_session, run_driver, session_files, wait_until


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


class Steps:
    def __init__(self) -> None:
        self.calls = 0

    def add(self, x: int, k: int = 1) -> int:
        self.calls += 1
        if x == -100:
            raise ValueError(f"stage refuses {x}")
        return x + k

    def count(self, x: Any = None) -> int:
        """Every call (hop or not) takes the next number: calls on one actor never overlap."""
        self.calls += 1
        return self.calls

    def stash(self, x: int, bag: list) -> int:
        bag.append(x)
        return len(bag)

    def grow(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, x + 1])

    def hold(self, x: int, marker: str) -> int:
        """Say the hop started (``marker`` exists), then wait until the test removes it."""
        Path(marker).write_text("started")
        wait_until(lambda: not os.path.exists(marker), timeout=60)
        return x

    def pid(self) -> int:
        return os.getpid()


Stage = sluice.remote(Steps)
Restartable = sluice.remote(max_restarts=1)(Steps)


@sluice.remote
class AsyncStage:
    async def add(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1


def hop(handle: Any, method: str, *extra: Any, **kwargs: Any) -> tuple[int, str, str, bytes]:
    """One hop: ``handle.method(value, *extra, **kwargs)``, the chained value first."""
    return (handle._actor_id, method, f"Stage.{method}", pack_hop_args((None, *extra), kwargs, 0))


def forward(hops: list, first: Any) -> sluice.ObjectRef:
    """Submit a chain that must be forwarded (its actors are constructed: see ``started``).

    Until its actors have acknowledged the chain's set-up the runtime declines it
    (a Plan makes ordinary calls then); declining submits nothing, so ask again.
    """
    rt = api.runtime()
    refs: list = []
    assert wait_until(lambda: refs.append(rt.submit_actor_chain(hops, first)) or refs[-1] is not None,
                      timeout=60, interval=0.001), "the chain was never forwarded"
    return refs[-1]


def started(*handles: Any) -> None:
    """Wait until every actor is constructed (a chain is forwarded only then)."""
    sluice.get([h.pid.remote() for h in handles], timeout=60)


def test_a_chain_gives_the_right_value_over_many_executes_with_one_task_each() -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    hops = [hop(a if i % 2 == 0 else b, "add", i) for i in range(10)]  # adds 0 + 1 + ... + 9
    ids = context.current().scheduler.task_ids
    before = next(ids)
    refs = []
    for x in range(200):
        refs.append(forward(hops, x))
        if len(refs) == 4:
            assert sluice.get(refs, timeout=60) == [v + 45 for v in range(x - 3, x + 1)]
            refs = []
    assert next(ids) - before == 201, "each execute should be one driver-side task"
    assert sluice.get([a.count.remote(), b.count.remote()], timeout=60) == [1001, 1001]


def test_per_execute_arguments_and_mutable_arguments_are_fresh_each_time() -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    for k in range(20):  # the second hop's arguments change every execute
        assert sluice.get(forward([hop(a, "add"), hop(b, "add", k)], 1), timeout=60) == 2 + k
    stash = [hop(a, "add"), hop(b, "stash", [])]  # a list argument: each call gets its own copy
    assert [sluice.get(forward(stash, i), timeout=60) for i in range(5)] == [1] * 5


def test_ordinary_calls_interleave_with_chains_and_never_overlap() -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    hops = [hop(a, "count"), hop(b, "count")]
    first_actor, chains = [], []
    for _ in range(25):
        batch = []
        for _ in range(4):
            batch.append(forward(hops, 0))
            first_actor.append(a.count.remote())  # queued behind the chain's first hop on a
            b.count.remote()
        chains += sluice.get(batch, timeout=60)
    assert sluice.get(first_actor, timeout=60) == list(range(2, 202, 2))
    # b runs 100 hops and 100 ordinary calls one at a time, in whatever order they arrive.
    last = chains + [sluice.get(b.count.remote(), timeout=60)]
    assert last[-1] == 201 and len(set(last)) == 101 and max(last[:-1]) <= 200


def test_an_error_in_a_hop_reaches_get_and_the_actors_live_on() -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    hops = [hop(a, "add"), hop(b, "add"), hop(a, "add")]
    with pytest.raises(ValueError, match="stage refuses -100") as info:
        sluice.get(forward(hops, -101), timeout=60)  # the second hop gets -100
    assert isinstance(info.value, TaskError)
    assert sluice.get(forward(hops, 1), timeout=60) == 4


def test_killing_an_actor_in_its_hop_fails_the_chain_with_actor_died(tmp_path: Path) -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    marker = tmp_path / "started"
    ref = forward([hop(a, "add"), hop(b, "hold", str(marker)), hop(a, "add")], 1)
    assert wait_until(marker.exists)
    sluice.kill(b)
    with pytest.raises(ActorDiedError):
        sluice.get(ref, timeout=60)
    assert api.runtime().submit_actor_chain([hop(a, "add"), hop(b, "add")], 1) is None
    assert sluice.get(a.add.remote(1), timeout=60) == 2  # the other actor lives on


def test_a_next_actor_killed_before_its_hop_fails_the_chain(tmp_path: Path) -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    marker = tmp_path / "started"
    ref = forward([hop(a, "hold", str(marker)), hop(b, "add")], 1)
    assert wait_until(marker.exists)
    sluice.kill(b)
    with pytest.raises(ActorDiedError):
        sluice.get(ref, timeout=60)
    marker.unlink()  # a ends its hop and finds b gone
    assert sluice.get(a.add.remote(1), timeout=60) == 2


def test_a_restarted_actor_gets_the_chain_set_up_again(tmp_path: Path) -> None:
    a, b = Restartable.remote(), Restartable.remote()
    started(a, b)
    hops = [hop(a, "add"), hop(b, "add")]
    assert sluice.get(forward(hops, 1), timeout=60) == 3
    old_pid = sluice.get(b.pid.remote(), timeout=60)
    marker = tmp_path / "started"
    ref = forward([hop(a, "add"), hop(b, "hold", str(marker))], 1)
    assert wait_until(marker.exists)
    sluice.kill(b, no_restart=False)
    with pytest.raises(ActorDiedError):
        sluice.get(ref, timeout=60)
    assert sluice.get(b.pid.remote(), timeout=60) != old_pid  # restarted
    assert [sluice.get(forward(hops, i), timeout=60) for i in range(5)] == [2, 3, 4, 5, 6]


def test_an_async_actor_awaits_its_hop() -> None:
    a, b = AsyncStage.remote(), Stage.remote()
    started(b)
    sluice.get(a.add.remote(0), timeout=60)
    hops = [(a._actor_id, "add", "AsyncStage.add", pack_hop_args((None,), {}, 0)), hop(b, "add")]
    assert [sluice.get(forward(hops, i), timeout=60) for i in range(5)] == [2, 3, 4, 5, 6]


def test_large_values_travel_through_shared_memory_and_leave_none_behind() -> None:
    a, b = Stage.remote(), Stage.remote()
    started(a, b)
    hops = [hop(a if i % 2 == 0 else b, "grow") for i in range(6)]
    small = np.arange(100.0)  # 800 bytes at first: inline, then past CHAIN_INLINE_MAX
    big = np.arange(20_000.0)  # 160 KB from the start: the driver stores it
    assert small.nbytes * 2 ** 6 > CHAIN_INLINE_MAX
    for first in [small, big] * 10:
        out = sluice.get(forward(hops, first), timeout=60)
        assert out.shape == (first.size * 64,) and out[-1] == first[-1] + 6
    # A value handed from actor to actor lives in a segment named after an id of the
    # actor process (owner bits set); the next actor unlinks it once mapped.
    def hop_segments() -> list[str]:
        names = [f.rsplit("-", 1)[1] for f in session_files(current_session())]
        return [n for n in names if all(c in "0123456789abcdef" for c in n) and int(n, 16) >> 40]
    assert wait_until(lambda: not hop_segments())


def test_executes_from_several_threads_each_get_their_own_value() -> None:
    a, b = Stage.bind(), Stage.bind()
    with sluice.InputNode() as inp:
        node = inp
        for i in range(10):
            node = (a if i % 2 == 0 else b).add.bind(node)
    plan = node.compile()
    assert sluice.get(plan.execute(0), timeout=60) == 10
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for i in range(100):
                x = thread * 1000 + i
                results[x] = sluice.get(plan.execute(x), timeout=60)
        except BaseException as err:  # reported below: a thread's error would vanish
            errors.append(err)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {x: x + 10 for x in results} and len(results) == 400


def test_chain_sockets_live_in_a_private_directory_that_shutdown_removes() -> None:
    code = """
import os, stat, sluice
from sluice.executor import api
from sluice.executor.chains import pack_hop_args
sluice.init(num_cpus=1)

@sluice.remote
class Stage:
    def add(self, x):
        return x + 1

a, b = Stage.remote(), Stage.remote()
sluice.get([a.add.remote(0), b.add.remote(0)])
hops = [(h._actor_id, "add", "Stage.add", pack_hop_args((None,), {}, 0)) for h in (a, b)]
rt = api.runtime()
while rt.submit_actor_chain(hops, 1) is None:
    pass
directory = rt.actors.chains.results.directory
print(oct(stat.S_IMODE(os.stat(directory).st_mode)), sorted(os.listdir(directory)))
sluice.shutdown()
print(os.path.exists(directory))
"""
    out = run_driver(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    mode, names = lines[0].split(" ", 1)
    assert mode == "0o700" and "'driver'" in names and names.count("'c") == 2
    assert lines[1] == "False"


def test_the_chain_directory_of_a_driver_that_died_is_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    stale = Path(tempfile.gettempdir()) / f"{CHAIN_DIR_PREFIX}{dead_pid}-0000-x"
    live = Path(tempfile.gettempdir()) / f"{CHAIN_DIR_PREFIX}{os.getpid()}-0000-x"
    for d in (stale, live):
        d.mkdir(mode=0o700)
        (d / "c1").write_text("")
    try:
        assert cleanup_stale_chain_dirs() >= 1
        assert not stale.exists() and live.exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)
