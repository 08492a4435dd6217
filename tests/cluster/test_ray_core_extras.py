"""On a cluster: an actor's exit_actor, cancel(recursive=True) of nested tasks, max_calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import ActorDiedError, TaskCancelledError
from tests.cluster.conftest import connected_cluster
from tests.executor.test_actor_exit import Service
from tests.executor.test_cancel_recursive import Registry, parent, submitted
from tests.executor.test_max_calls import pid_twice


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    with connected_cluster(nodes=1, cpus=2, head_cpus=0):
        yield


def test_exit_actor_fails_its_calls_and_the_actor_stays_dead() -> None:
    actor = Service.remote()
    stopping, queued = actor.stop.remote(), actor.work.remote()
    for ref in (stopping, queued):
        with pytest.raises(ActorDiedError, match="Service.stop: the actor exited on purpose"):
            sluice.get(ref, timeout=60)
    with pytest.raises(ActorDiedError):  # max_restarts=3 does not bring it back
        sluice.get(actor.work.remote(), timeout=60)


def test_cancel_cancels_the_nested_tasks_of_the_task(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    registry = Registry.remote()
    top = parent.remote(gate, registry)
    descendants = submitted(registry, 3)
    sluice.cancel(top)
    Path(gate).touch()
    for ref in [top, *descendants]:
        with pytest.raises(TaskCancelledError):
            sluice.get(ref, timeout=60)


def test_a_node_worker_runs_at_most_max_calls_calls() -> None:
    from collections import Counter

    per_process = Counter(sluice.get([pid_twice.remote() for _ in range(8)], timeout=120))
    assert max(per_process.values()) <= 2 and len(per_process) >= 4, per_process
