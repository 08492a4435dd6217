"""Scheduler transitions seen through the local runtime: work refused on arrival."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import ObjectLostError
from sluice.executor.actor_handle import ActorHandle

DEADLINE_S = 60


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=1)
    try:
        yield
    finally:
        sluice.shutdown()


@sluice.remote
class Box:
    def value(self) -> int:
        return 1


@sluice.remote
def two() -> int:
    return 2


def test_a_call_on_an_actor_this_runtime_never_had_fails_at_get_and_runs_nowhere() -> None:
    box = Box.remote()
    stranger = ActorHandle(0x5EED, "Box", box._methods)  # as a handle from an earlier session
    with pytest.raises(ObjectLostError, match="no actor with id 5eed in this runtime"):
        sluice.get(stranger.value.remote(), timeout=DEADLINE_S)
    # The refused call was never queued as a task: the runtime goes on.
    assert sluice.get([two.remote(), box.value.remote()], timeout=DEADLINE_S) == [2, 1]
