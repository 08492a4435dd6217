"""The state API on the embedded runtime: tasks through their states, actors, objects,
workers, nodes, jobs, summaries, filters and limits, from the driver and from a task."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sluice
from sluice.util import state
from sluice.util.state import (
    list_actors,
    list_jobs,
    list_nodes,
    list_objects,
    list_tasks,
    list_workers,
    summarize_actors,
    summarize_objects,
    summarize_tasks,
)
from tests.polling import until


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
def square(x):
    return x * x


@sluice.remote
def explode(x):
    raise ValueError(f"no good: {x}")


@sluice.remote
def wait_for(path: str) -> int:
    while not os.path.exists(path):
        time.sleep(0.01)
    return os.getpid()


@sluice.remote
def add_one(x):
    return x + 1


@sluice.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, x):
        self.n += x
        return self.n


def test_ended_tasks_are_listed_with_where_and_how_long_they_ran() -> None:
    sluice.get([square.remote(i) for i in range(4)])
    with pytest.raises(ValueError):
        sluice.get(explode.remote(7))
    rows = list_tasks(filters=[("name", "=", "square")], limit=1000)
    assert len(rows) >= 4 and {r.state for r in rows} == {"FINISHED"}
    pids = {w.pid for w in list_workers()}
    for row in rows[-4:]:
        assert row.type == "NORMAL_TASK" and row.worker_pid in pids and row.node_id == "local"
        assert row.duration_s >= 0 and row.start_time_ms >= row.creation_time_ms - 1
        assert row.end_time_ms >= row.start_time_ms and row["job_id"] == row.job_id
    (failed,) = list_tasks(filters=[("name", "=", "explode")])
    assert failed.state == "FAILED" and failed.error_type == "ValueError"
    assert "no good: 7" in failed.error_message and "in explode" in failed.error_message
    assert failed.worker_pid in pids   # where it failed


def test_a_task_is_seen_pending_running_then_finished(tmp_path: Path) -> None:
    go = tmp_path / "go"
    ref = wait_for.remote(str(go))
    after = add_one.remote(ref)   # waits for ref's value
    running = until(lambda: list_tasks(filters=[("name", "=", "wait_for"),
                                                ("state", "=", "RUNNING")]))
    assert until(lambda: list_tasks(filters=[("name", "=", "add_one"),
                                             ("state", "=", "PENDING_ARGS_AVAIL")]))
    go.touch()
    pid = sluice.get(ref)
    assert running[0].worker_pid == pid
    sluice.get(after)
    (done,) = [r for r in list_tasks(limit=1000) if r.task_id == running[0].task_id]
    assert done.state == "FINISHED" and done.worker_pid == pid


def test_actors_and_their_calls() -> None:
    counter = Counter.options(name="state-counter").remote()
    assert sluice.get([counter.add.remote(1) for _ in range(3)])[-1] == 3
    (actor,) = list_actors(filters=[("name", "=", "state-counter")])
    assert actor.class_name == "Counter" and actor.state == "ALIVE"
    assert actor.pid in {w.pid for w in list_workers(filters=[("actor_class", "=", "Counter")])}
    calls = list_tasks(filters=[("actor_id", "=", actor.actor_id)])
    assert [c.state for c in calls] == ["FINISHED"] * 3
    assert {c.type for c in calls} == {"ACTOR_TASK"} and {c.name for c in calls} == {"Counter.add"}
    sluice.kill(counter)
    dead = until(lambda: [a for a in list_actors(filters=[("actor_id", "=", actor.actor_id)])
                          if a.state == "DEAD"])
    assert "sluice.kill" in dead[0].death_cause
    assert summarize_actors()["cluster"]["summary"]["Counter"]["state_counts"]["DEAD"] >= 1


def test_objects_show_their_size_and_where_they_live() -> None:
    big = sluice.put(np.ones(1_000_000))
    small = sluice.put(3)
    rows = {r.object_id: r for r in list_objects(limit=10_000)}
    big_row, small_row = rows[f"{big.id:016x}"], rows[f"{small.id:016x}"]
    assert big_row.in_shared_memory and big_row.object_size >= 8_000_000
    assert not small_row.in_shared_memory and small_row.object_size < 1000
    assert big_row.task_status == "FINISHED" and big_row.reference_type == "LOCAL_REFERENCE"
    summary = summarize_objects()["cluster"]
    assert summary["total_objects"] >= 2 and summary["total_size_mb"] >= 7.6
    del big, small


def test_nodes_and_jobs() -> None:
    (node,) = list_nodes()
    assert node.state == "ALIVE" and node.resources_total["CPU"] == 2.0 and node.is_head_node
    (job,) = list_jobs()
    assert job.status == "RUNNING" and job.driver_pid == os.getpid()
    assert job.job_id == sluice.get_runtime_context().get_job_id()


def test_summary_counts_tasks_by_name_and_state() -> None:
    before = summarize_tasks()["cluster"]["summary"].get("add_one", {}).get("state_counts", {})
    sluice.get([add_one.remote(i) for i in range(5)])
    summary = summarize_tasks()["cluster"]
    assert summary["summary"]["add_one"]["state_counts"]["FINISHED"] == \
        before.get("FINISHED", 0) + 5
    assert summary["total_tasks"] == sum(sum(s["state_counts"].values())
                                         for s in summary["summary"].values())


def test_filters_are_case_insensitive_and_negatable_and_limit_keeps_the_newest() -> None:
    sluice.get([square.remote(i) for i in range(6)])
    assert list_tasks(filters=[("name", "=", "SQUARE")]) == \
        list_tasks(filters=[("name", "=", "square")])
    others = list_tasks(filters=[("name", "!=", "square")], limit=1000)
    assert others and all(r.name != "square" for r in others)
    newest = list_tasks(filters=[("name", "=", "square")], limit=2)
    everything = list_tasks(filters=[("name", "=", "square")], limit=10_000)
    assert len(newest) == 2 and newest == everything[-2:]


@sluice.remote
def list_from_a_task() -> list:
    inner = square.remote(5)
    assert sluice.get(inner) == 25
    return [dict(r) for r in list_tasks(filters=[("name", "=", "square")], limit=10_000)]


def test_a_task_can_list_and_nested_tasks_name_their_parent() -> None:
    ref = list_from_a_task.remote()
    rows = sluice.get(ref)
    assert rows and rows[-1]["state"] == "FINISHED"
    (outer,) = [r for r in list_tasks(filters=[("name", "=", "list_from_a_task")])]
    assert rows[-1]["parent_task_id"] == outer.task_id


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="'colour' is not a column tasks can be filtered on"):
        list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="predicate '~' .* use '=' or '!='"):
        list_tasks(filters=[("state", "~", "FAILED")])
    with pytest.raises(ValueError, match="is not \\(column, predicate, value\\)"):
        list_actors(filters=[("state", "FAILED")])
    with pytest.raises(TypeError, match="give a list of"):
        list_tasks(filters="state=FAILED")
    with pytest.raises(ValueError, match="limit=0"):
        list_tasks(limit=0)
    from sluice.executor.api import runtime

    with pytest.raises(ValueError, match="'queues' is not a state table"):
        runtime().state("queues")


def test_rows_read_as_attributes_and_say_what_columns_exist() -> None:
    row = state.State({"state": "FINISHED"})
    assert row.state == "FINISHED" and row.asdict() == {"state": "FINISHED"}
    with pytest.raises(AttributeError, match="no column 'colour'; the row has state"):
        row.colour  # noqa: B018
