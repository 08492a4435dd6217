"""sluice.timeline(): a Chrome trace of what ran, per node and worker, plan stages named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.compiler import history
from sluice.util.state import list_workers


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
def work(x):
    return sum(range(10_000 + x))


@sluice.remote
def fail(x):
    raise KeyError(x)


@sluice.remote
def finish(x):
    return x + 1


@sluice.remote
class Tally:
    def add(self, x):
        return x


def test_the_timeline_is_a_chrome_trace_of_tasks_actor_calls_and_plan_stages(
        tmp_path: Path) -> None:
    history.enable()   # (the dashboard does this: plans' runs are recorded from now on)
    sluice.get([work.remote(i) for i in range(6)])
    with pytest.raises(KeyError):
        sluice.get(fail.remote(1))
    tally = Tally.remote()
    sluice.get([tally.add.remote(i) for i in range(3)])
    with sluice.InputNode() as inp:
        dag = finish.bind(work.bind(inp))
    plan = dag.compile(optimize=False)
    assert sluice.get(plan.execute(5)) == sum(range(10_005)) + 1
    path = tmp_path / "trace.json"
    assert sluice.timeline(str(path)) is None
    events = json.loads(path.read_text())
    assert events == sluice.timeline()   # the same, as a list
    spans = [e for e in events if e["ph"] == "X"]
    pids = {w.pid for w in list_workers()}
    assert all(e["tid"] in pids and e["pid"] == "node local" and e["dur"] > 0 for e in spans)
    assert [e["ts"] for e in spans] == sorted(e["ts"] for e in spans)
    names = [e["name"] for e in spans]
    assert names.count("work") >= 6 and names.count("Tally.add") == 3
    (failed,) = [e for e in spans if e["name"] == "fail"]
    assert failed["cname"] == "terrible" and failed["args"]["error_type"] == "KeyError"
    staged = [e for e in spans if "stage" in e["args"]]
    assert [e["name"] for e in staged] == ["stage 2: work", "stage 3: finish"]
    assert {e["args"]["plan"] for e in staged} == {history.records()[-1].number}
    threads = {e["tid"] for e in events if e["ph"] == "M"}
    assert threads == {e["tid"] for e in spans}   # every worker row is named
