"""Write notebooks/03-workflows.ipynb and execute it, saving its outputs.

Run from anywhere: ``python notebooks/build_03_workflows.py``. The notebook is
built from the cells below, executed top to bottom in a fresh ``python3`` kernel
(with this checkout on its PYTHONPATH), and saved with its outputs. It writes a
two-step ETL module and a driver script into a temporary folder, runs the job as
a durable workflow in a driver process that it kills mid-run, resumes the run,
then schedules the job every two seconds; the folder is removed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nbbuild, beside this file
import nbbuild

REPO_ROOT = nbbuild.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "03-workflows.ipynb"

CELLS = [
    ("md", """\
# A durable ETL workflow: killed, resumed, then scheduled

`sluice.workflow` runs a `.bind()` DAG as a **durable workflow**: each step's output is
checkpointed in a storage folder (an SQLite database for the metadata, one file per
checkpoint) before the next step reads it. A run whose driver process dies shows
`RESUMABLE`, and `workflow.resume(...)` runs only the steps that have no checkpoint yet.
The same storage keeps **cron schedules**, which a `Scheduler` fires.

This notebook:

1. writes a two-step ETL job (extract, then transform and load a Parquet file);
2. runs it as a workflow in a separate driver process, and kills that process with
   `SIGKILL` while the second step runs;
3. looks at the run (`RESUMABLE`, and which steps finished) and resumes it here: the
   first step does not run again;
4. schedules the job every two seconds and lets a `Scheduler` fire it three times."""),
    ("code", """\
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

import sluice
from sluice import workflow
from sluice.workflow import WorkflowStatus, WorkflowStorage

workdir = Path(tempfile.mkdtemp(prefix="sluice-workflows-"))
store = workdir / "workflows"          # the workflow storage folder
sys.path.insert(0, str(workdir))       # etl_jobs (written below) imports here and in the workers

sluice.init(num_cpus=2)"""),
    ("md", """\
## The job: two steps

`etl_jobs.py` holds two `@sluice.remote` functions and `nightly(day)`, which returns the
DAG of the job: `transform_load.bind(extract.bind(day), day)`. Each node of the DAG is one
step of the workflow. `.options(...)` sets a step's retry policy: `extract` is tried up to
4 times, 0.5 s then 1 s then 2 s apart (`max_retries`, `retry_delay_s`, `backoff`).

Every step appends a line to `side_effects.log` when it starts, so we can see what ran.
The load step stands in for a slow one: it makes a `loading` marker file, then waits
until a `gate` file exists, which gives us time to kill its driver."""),
    ("code", """\
%%writefile {workdir}/etl_jobs.py
\"\"\"A nightly ETL job: extract a day of meter readings, then total them per site and
load the result as a Parquet file.\"\"\"
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sluice

HERE = Path(__file__).resolve().parent
LOG = HERE / "side_effects.log"      # every step appends a line when it starts
LOADING = HERE / "loading"           # made when a load starts
GATE = HERE / "gate"                 # a load waits until this file exists


def note(line: str) -> None:
    with open(LOG, "a") as f:
        f.write(line + "\\n")


@sluice.remote
def extract(day: str) -> pd.DataFrame:
    note(f"extract {day}")
    rng = np.random.default_rng(int(day.replace("-", "")))
    hours = pd.date_range(day, periods=24, freq="h")
    return pd.DataFrame({"site": np.repeat(["north", "south", "west"], 24),
                         "hour": np.tile(hours, 3),
                         "kwh": rng.gamma(4.0, 12.5, 72).round(1)})


@sluice.remote
def transform_load(readings: pd.DataFrame, day: str) -> str:
    note(f"transform_load {day}")
    LOADING.touch()
    while not GATE.exists():         # a slow load, until the gate opens
        time.sleep(0.02)
    daily = readings.groupby("site", as_index=False).agg(kwh=("kwh", "sum"), peak_kwh=("kwh", "max"))
    daily.insert(0, "day", day)
    out = HERE / "warehouse" / f"usage_{day}.parquet"
    out.parent.mkdir(exist_ok=True)
    daily.to_parquet(out.with_suffix(".tmp"), index=False)
    os.replace(out.with_suffix(".tmp"), out)   # a reader never sees half a file
    return str(out)


def nightly(day: str = "2026-11-01"):
    \"\"\"The job's DAG (a schedule's target: "etl_jobs:nightly").\"\"\"
    raw = extract.options(max_retries=3, retry_delay_s=0.5, backoff=2.0).bind(day)
    return transform_load.bind(raw, day)"""),
    ("md", """\
## A driver process, killed mid-run

The driver is a script of its own: it starts sluice and calls `workflow.run(dag,
workflow_id=..., storage=...)`. We start it, wait until its load step has started (the
`loading` marker; by then `extract` is checkpointed), and kill its whole process group
with `SIGKILL`: no clean-up code runs, as when a machine goes down."""),
    ("code", """\
%%writefile {workdir}/run_nightly.py
import sys

import sluice
from sluice import workflow

import etl_jobs

sluice.init(num_cpus=2)
out = workflow.run(etl_jobs.nightly("2026-11-01"), workflow_id="nightly-2026-11-01",
                   storage=sys.argv[1])
print("loaded", out)"""),
    ("code", """\
def wait_until(condition, what, timeout=60.0):
    \"\"\"Poll ``condition()`` until it is true; fail after ``timeout`` seconds.\"\"\"
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)

with open(workdir / "driver.log", "w") as driver_log:
    driver = subprocess.Popen([sys.executable, str(workdir / "run_nightly.py"), str(store)],
                              cwd=workdir, stdout=driver_log, stderr=subprocess.STDOUT,
                              start_new_session=True)   # its own process group: it and its workers
try:
    wait_until(lambda: (workdir / "loading").exists() or driver.poll() is not None,
               "the load step starting")
    assert driver.poll() is None, (workdir / "driver.log").read_text()
finally:
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
print(f"driver killed by signal {-driver.returncode} ({signal.Signals(-driver.returncode).name})")
print((workdir / "side_effects.log").read_text())"""),
    ("md", """\
## The run is RESUMABLE

The run is still marked `RUNNING` in the database, but its driver process is gone, so
`get_status` reports `RESUMABLE`. `WorkflowStorage(...).steps(id)` lists its steps:
`extract` finished (its output is checkpointed), `transform_load` was running."""),
    ("code", """\
def steps_table(workflow_id):
    \"\"\"A run's steps: name, status, attempts, seconds.\"\"\"
    steps = pd.DataFrame(WorkflowStorage(store).steps(workflow_id))
    return steps.assign(status=steps.status.astype(str))[["name", "status", "attempts", "duration"]]

print("status:", workflow.get_status("nightly-2026-11-01", storage=store))
steps_table("nightly-2026-11-01")"""),
    ("md", """\
## Resuming it here

`workflow.resume(id)` takes the run over in this process. It loads `extract`'s output from
its checkpoint instead of running it, and runs `transform_load` again (its second
attempt). We open the gate first, so the load goes through this time."""),
    ("code", """\
(workdir / "gate").touch()
out = workflow.resume("nightly-2026-11-01", storage=store)
print("output:", Path(out).relative_to(workdir))
print("status:", workflow.get_status("nightly-2026-11-01", storage=store))
print()
print(workdir.joinpath("side_effects.log").read_text())
steps_table("nightly-2026-11-01")"""),
    ("md", """\
`extract 2026-11-01` is in the log once: the resumed run did not extract again.
`workflow.get_output(id)` reads a finished run's output back from its checkpoints, and
the loaded file is ordinary Parquet:"""),
    ("code", """\
assert workflow.get_output("nightly-2026-11-01", storage=store) == out
pd.read_parquet(out)"""),
    ("md", """\
## Scheduling the job

`workflow.schedule(name, target, cron, ...)` saves a schedule in the same storage. The
target is `"module:function"`, a function that returns the DAG (called with `params`);
the cron expression has 5 fields, or 6 with **seconds first**, as here: every two
seconds. Bad cron expressions, time zones and targets are refused right here.

A `Scheduler` fires the due runs of every schedule in a storage each time it ticks;
`run_forever(stop)` ticks until the `stop` event is set. Each fired run gets the id
`"{schedule}@{logical time}"` and runs in the background (a sluice task drives it).
We run the scheduler in a thread until three runs have succeeded."""),
    ("code", """\
workflow.schedule("every-2s", "etl_jobs:nightly", "*/2 * * * * *",
                  params={"day": "2026-11-02"}, storage=store)

def succeeded():
    return [wid for wid, status in workflow.list_all(WorkflowStatus.SUCCESSFUL, storage=store)
            if wid.startswith("every-2s@")]

stop = threading.Event()
scheduler = threading.Thread(target=workflow.Scheduler(store).run_forever, args=(stop,))
scheduler.start()
try:
    wait_until(lambda: len(succeeded()) >= 3, "three scheduled runs succeeding")
finally:
    stop.set()
    scheduler.join()
# A run fired just before the stop still goes on: let it end.
wait_until(lambda: not workflow.list_all(WorkflowStatus.RUNNING, storage=store), "the last run ending")
print(f"{len(succeeded())} scheduled runs succeeded")"""),
    ("md", """\
`workflow.list_all()` lists every run in the storage with its status: the resumed run,
then the ones the schedule fired."""),
    ("code", """\
for workflow_id, status in workflow.list_all(storage=store):
    print(f"{workflow_id:40} {status}")"""),
    ("md", """\
The storage also records every fire of a schedule: its logical time, the run it started,
and that run's outcome (`SKIPPED_OVERLAP` would mark a time that came while a run of the
schedule was still going, since `max_active_runs=1`)."""),
    ("code", """\
fires = pd.DataFrame(WorkflowStorage(store).fires("every-2s"))
fires[["logical_time", "workflow_id", "outcome"]]"""),
    ("md", """\
Each scheduled run extracted and loaded once:"""),
    ("code", """\
print(workdir.joinpath("side_effects.log").read_text())"""),
    ("md", """\
## The same from the command line

A long-running `sluice scheduler` process does what the thread above did, for every
schedule in its storage folder (`--storage`, else `$SLUICE_WORKFLOW_STORAGE`, else
`~/.sluice/workflows`). The target module must be importable where the scheduler runs:

```bash
export PYTHONPATH=/path/to/jobs               # where etl_jobs.py lives
sluice schedule add every-2s --target etl_jobs:nightly --cron "*/2 * * * * *" \\
    --storage /path/to/workflows
sluice scheduler --storage /path/to/workflows # fires due runs until stopped (Ctrl-C)
sluice workflow list --storage /path/to/workflows
sluice workflow show nightly-2026-11-01 --storage /path/to/workflows
```"""),
    ("code", """\
sluice.shutdown()
shutil.rmtree(workdir)"""),
]


def build_notebook() -> nbformat.NotebookNode:
    """The notebook's cells, without outputs."""
    return nbbuild.build_notebook(CELLS)


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``cwd``."""
    return nbbuild.execute_notebook(nb, cwd)


if __name__ == "__main__":
    sys.exit(nbbuild.main(CELLS, NOTEBOOK))
