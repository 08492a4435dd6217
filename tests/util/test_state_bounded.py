"""The record of ended tasks is bounded (SLUICE_TASK_EVENTS_MAX): the oldest drop out."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import sluice
from sluice.executor.state import task_log_capacity
from sluice.util.state import list_tasks


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    os.environ["SLUICE_TASK_EVENTS_MAX"] = "50"
    try:
        sluice.init(num_cpus=2)
    finally:
        del os.environ["SLUICE_TASK_EVENTS_MAX"]
    yield
    sluice.shutdown()


@sluice.remote
def ident(x):
    return x


def test_only_the_newest_ended_tasks_are_kept() -> None:
    refs = [ident.remote(i) for i in range(400)]
    assert sluice.get(refs) == list(range(400))
    last = []
    for i in range(10):   # one at a time: surely the last ten to end
        last.append(ident.remote(i))
        assert sluice.get(last[-1]) == i
    rows = list_tasks(limit=10_000)
    assert len(rows) == 50 and {r.state for r in rows} == {"FINISHED"}
    kept = [oid for r in rows for oid in r.object_ids]
    assert kept[-10:] == [f"{ref.id:016x}" for ref in last]   # the newest, in order


def test_a_bad_bound_is_named(monkeypatch) -> None:
    monkeypatch.setenv("SLUICE_TASK_EVENTS_MAX", "lots")
    with pytest.raises(ValueError, match="SLUICE_TASK_EVENTS_MAX='lots' is not a whole number"):
        task_log_capacity()
    monkeypatch.setenv("SLUICE_TASK_EVENTS_MAX", "0")
    assert task_log_capacity() == 0


def test_the_dashboards_live_pages_read_only_the_newest_ended_tasks(monkeypatch) -> None:
    import re

    from sluice.dashboard.pages import View, overview
    from sluice.dashboard.server import BackendSource
    from sluice.executor import state
    from sluice.executor.api import runtime

    def finished_card() -> int:
        html = overview(View(BackendSource(runtime())))
        return int(re.search(r"class=value>(\d+)</div><div class=label>tasks finished",
                             html)[1])

    monkeypatch.setattr(state, "RECENT_TASKS", 5)
    before = finished_card()
    for i in range(60):   # one at a time: these end last, in this order
        assert sluice.get(ident.remote(i)) == i
    every, recent = runtime().state("tasks"), runtime().state("recent_tasks")
    assert len(every) == 50 and [r["task_id"] for r in recent] == \
        [r["task_id"] for r in every[-5:]]
    # The overview counts every task that ended (from the totals), more than the rows kept.
    assert finished_card() == before + 60
