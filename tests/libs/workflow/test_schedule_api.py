"""workflow.schedule: a schedule is checked when it is added, and persists in the storage."""

from __future__ import annotations

import sys

import pytest

from sluice import workflow
from sluice.libs.workflow.storage import WorkflowStorage

JOBS = '''
import sluice

@sluice.remote
def extract(n=2):
    return list(range(n))

@sluice.remote
def load(xs):
    return sum(xs)

def nightly(n=2):
    return load.bind(extract.bind(n))

dag = nightly()

def not_a_dag():
    return 42
'''


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    (tmp_path / "sched_jobs.py").write_text(JOBS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "sched_jobs"
    sys.modules.pop("sched_jobs", None)


def test_a_schedule_is_saved_with_its_settings(tmp_path, jobs):
    workflow.schedule("nightly", f"{jobs}:nightly", "30 2 * * *", timezone="Europe/Paris",
                      params={"n": 5}, catchup=True, max_active_runs=2, storage=tmp_path / "s")
    workflow.schedule("often", f"{jobs}:dag", "*/2 * * * * *", storage=tmp_path / "s")
    saved = {s["name"]: s for s in WorkflowStorage(tmp_path / "s").list_schedules()}
    assert saved["nightly"]["cron"] == "30 2 * * *" and saved["nightly"]["timezone"] == "Europe/Paris"
    assert saved["nightly"]["params"] == {"n": 5} and saved["nightly"]["catchup"]
    assert saved["nightly"]["max_active_runs"] == 2 and saved["often"]["target"] == f"{jobs}:dag"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cron": "61 * * * *"}, r"cron expression '61 \* \* \* \*': the minute field '61'"),
    ({"cron": "* * *"}, r"cron expression '\* \* \*'"),
    ({"timezone": "Mars/Olympus"}, r"unknown timezone 'Mars/Olympus'"),
    ({"target": "no_such_module_here:f"}, r"no_such_module_here"),
    ({"target": "sched_jobs:missing"}, r"missing"),
    ({"target": "sched_jobs:not_a_dag"}, r"sched_jobs:not_a_dag"),
    ({"max_active_runs": 0}, r"max_active_runs=0"),
])
def test_a_bad_schedule_is_refused_when_added_and_not_saved(tmp_path, jobs, kwargs, message):
    args = {"name": "bad", "target": f"{jobs}:nightly", "cron": "0 2 * * *", **kwargs}
    with pytest.raises(ValueError, match=message):
        workflow.schedule(**args, storage=tmp_path)
    assert WorkflowStorage(tmp_path).list_schedules() == []
