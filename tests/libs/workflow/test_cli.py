"""The workflow command line (sluice/libs/workflow/cli.py): ``sluice schedule``, ``backfill``,
``workflow`` run in-process through ``sluice.cli.main``; ``sluice scheduler`` as a real daemon
process, started the way the console script starts it, stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import sluice
from sluice import cli, workflow
from sluice.libs.workflow.status import StepStatus, WorkflowStatus
from sluice.libs.workflow.storage import WorkflowStorage

REPO = Path(__file__).resolve().parents[3]
MODULE = "wf_cli_jobs"
JOBS = textwrap.dedent("""
    import os
    import time

    import sluice


    @sluice.remote
    def numbers(n):
        return list(range(n))


    @sluice.remote
    def total(xs, scale):
        return sum(xs) * scale


    def pipeline(n=4, scale=1):
        return total.bind(numbers.bind(n), scale)


    @sluice.remote(max_retries=0)
    def boom(x):
        raise RuntimeError(f"boom {x}")


    def broken():
        return boom.bind(1)


    def not_a_dag():
        return 42


    @sluice.remote
    def held(gate, value):
        while not os.path.exists(gate):   # in flight until the test opens the gate
            time.sleep(0.02)
        return value


    def gated(gate):
        return held.bind(gate, numbers.bind(3))


    @sluice.remote
    def stamp(out, logical, start, end):
        # One file per day: the run's own day, read from its logical time.
        with open(os.path.join(out, f"usage_{logical[:10]}.txt"), "w") as f:
            f.write(f"{logical} {start} {end}")
        return [logical, start, end]


    def daily(out, logical_time, data_interval):
        start, end = data_interval
        return stamp.bind(out, logical_time.isoformat(), start.isoformat(), end.isoformat())


    @sluice.remote(max_retries=0)
    def stamp_when_open(gate, logical, start, end):
        if not os.path.exists(gate):
            raise RuntimeError("the gate is closed")
        return [logical, start, end]


    def gated_daily(gate, logical_time, data_interval=None):
        start, end = data_interval
        return stamp_when_open.bind(gate, logical_time.isoformat(), start.isoformat(),
                                    end.isoformat())


    @sluice.remote
    def isoformats(logical_time, data_interval):
        return [logical_time.isoformat(), *(t.isoformat() for t in data_interval)]


    with sluice.InputNode() as inp:
        reads_input = isoformats.bind(inp.logical_time, inp.data_interval)
""")
# The console script's own folder, not the current one, is first on its sys.path.
CONSOLE = "import sys\nfrom sluice.cli import main\nsys.exit(main())\n"


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> Path:
    """A folder holding the target module: the current directory of every test (and on the
    workers' path, since the runtime starts after it is on sys.path)."""
    folder = tmp_path_factory.mktemp("jobs")
    (folder / f"{MODULE}.py").write_text(JOBS)
    sys.path.insert(0, str(folder))
    sluice.init(num_cpus=2)
    yield folder
    sluice.shutdown()
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


@pytest.fixture
def store(jobs: Path, tmp_path: Path, monkeypatch) -> str:
    monkeypatch.chdir(jobs)
    return str(tmp_path / "store")


def sluice_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def console(jobs: Path, bin_dir: Path, *args: str,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``sluice ARGS`` as the console script runs it (from ``bin_dir``), in the jobs folder."""
    script = bin_dir / "sluice"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(CONSOLE)
    return subprocess.run([sys.executable, str(script), *args], cwd=jobs, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def fields(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def add(capsys, store: str, name: str, cron: str, *more: str,
        target: str = f"{MODULE}:pipeline") -> None:
    code, out, err = sluice_cli(capsys, "schedule", "add", name, "--target", target, "--cron", cron,
                                "--storage", store, *more)
    assert (code, err) == (0, ""), err
    assert out.startswith(f"added schedule {name!r}: {target} at {cron!r}")


# ---------------------------------------------------------------------------- schedule


def test_add_list_pause_resume_remove(store, capsys):
    add(capsys, store, "nightly", "30 2 * * *", "--timezone", "America/New_York", "--param", "n=5")
    add(capsys, store, "tick", "*/2 * * * * *", "--catchup", "--max-active-runs", "3")
    saved = WorkflowStorage(store).get_schedule("nightly")
    assert (saved["timezone"], saved["params"], saved["catchup"], saved["max_active_runs"]) == (
        "America/New_York", {"n": 5}, False, 1)
    assert WorkflowStorage(store).get_schedule("tick")["catchup"] is True

    def listing() -> list[list[str]]:
        code, out, _ = sluice_cli(capsys, "schedule", "list", "--storage", store)
        assert code == 0
        return [fields(line) for line in out.splitlines()]

    assert listing() == [
        ["NAME", "CRON", "TIMEZONE", "TARGET", "PAUSED", "LAST FIRED"],
        ["nightly", "30 2 * * *", "America/New_York", f"{MODULE}:pipeline", "no", "never"],
        ["tick", "*/2 * * * * *", "UTC", f"{MODULE}:pipeline", "no", "never"]]
    assert sluice_cli(capsys, "schedule", "pause", "nightly", "--storage", store) == (
        0, "paused schedule 'nightly'\n", "")
    assert listing()[1][4] == "yes"
    assert sluice_cli(capsys, "schedule", "resume", "nightly", "--storage", store) == (
        0, "resumed schedule 'nightly'\n", "")
    assert listing()[1][4] == "no"
    assert sluice_cli(capsys, "schedule", "remove", "nightly", "--storage", store) == (
        0, "removed schedule 'nightly'\n", "")
    assert [row[0] for row in listing()] == ["NAME", "tick"]
    code, out, err = sluice_cli(capsys, "schedule", "pause", "nightly", "--storage", store)
    assert (code, out) == (2, "")
    assert err == ("sluice schedule pause: error: no schedule 'nightly' in this storage; list the "
                   "schedules to see the ones there are\n")


BAD_SCHEDULES = [
    (["--cron", "61 * * * *"],
     "cron expression '61 * * * *': the minute field '61' is not valid (it takes 0-59"),
    (["--cron", "* * *"], "cron expression '* * *' has 3 fields; give 5 fields"),
    (["--cron", "0 3 * * *", "--timezone", "Mars/Olympus"], "unknown timezone 'Mars/Olympus'"),
    (["--cron", "0 3 * * *", "--target", "no_such_module_7c:f"],
     "schedule target 'no_such_module_7c:f': no module named 'no_such_module_7c'"),
    (["--cron", "0 3 * * *", "--target", f"{MODULE}:nope"],
     f"schedule target '{MODULE}:nope': module '{MODULE}' has no attribute 'nope'"),
    (["--cron", "0 3 * * *", "--target", f"{MODULE}:not_a_dag"],
     f"schedule target '{MODULE}:not_a_dag' returned a value of type int, not a DAG"),
    (["--cron", "0 3 * * *", "--param", "n"], "--param 'n' is not KEY=VALUE"),
    (["--cron", "0 3 * * *", "--max-active-runs", "0"], "max_active_runs=0: give an int >= 1"),
]


@pytest.mark.parametrize("args, message", BAD_SCHEDULES)
def test_add_refuses_a_bad_cron_timezone_or_target_with_status_2(store, capsys, args, message):
    if "--target" not in args:
        args = [*args, "--target", f"{MODULE}:pipeline"]
    code, out, err = sluice_cli(capsys, "schedule", "add", "bad", *args, "--storage", store)
    assert (code, out) == (2, "")
    assert err.startswith(f"sluice schedule add: error: {message}"), err
    assert err.count("\n") == 1
    assert WorkflowStorage(store).list_schedules() == []


def test_an_action_is_required(capsys):
    code, out, err = sluice_cli(capsys, "schedule")
    assert (code, out) == (2, "")
    assert err == ("sluice schedule: error: name an action, e.g. `sluice schedule list` (see "
                   "`sluice schedule --help`)\n")


def test_trigger_runs_the_target_now_as_a_recorded_fire(store, capsys):
    add(capsys, store, "nightly", "30 2 * * *", "--param", "n=5")
    before = datetime.now(timezone.utc)
    code, out, err = sluice_cli(capsys, "schedule", "trigger", "nightly", "--param", "scale=10",
                                "--storage", store)
    assert (code, err) == (0, "")
    line, output = out.splitlines()
    name, logical, outcome, workflow_id = fields(line)
    assert (name, outcome, workflow_id, output) == (
        "nightly", "SUCCESSFUL", f"nightly@{logical}", "100")     # sum(range(5)) * 10
    assert before <= datetime.fromisoformat(logical) <= datetime.now(timezone.utc)
    storage = WorkflowStorage(store)
    assert [(f["logical_time"], f["workflow_id"], f["outcome"]) for f in storage.fires("nightly")
            ] == [(logical, workflow_id, "SUCCESSFUL")]
    assert storage.get_run(workflow_id)["schedule_name"] == "nightly"
    assert storage.get_schedule("nightly")["last_logical_time"] is None   # its timeline is untouched


def test_trigger_of_a_failing_target_reports_the_error_with_status_1(store, capsys):
    add(capsys, store, "doomed", "@daily", target=f"{MODULE}:broken")
    code, out, err = sluice_cli(capsys, "schedule", "trigger", "doomed", "--storage", store)
    assert (code, err) == (1, "")
    name, logical, outcome, workflow_id, error = fields(out)
    assert (name, outcome, workflow_id) == ("doomed", "FAILED", f"doomed@{logical}")
    assert error.startswith(f"WorkflowError: workflow 'doomed@{logical}': step boom (")
    assert error.endswith("failed after 1 attempt(s): RuntimeError: boom 1")
    assert WorkflowStorage(store).fires("doomed")[0]["outcome"] == "FAILED"
    code, out, err = sluice_cli(capsys, "schedule", "trigger", "nope", "--storage", store)
    assert (code, out) == (2, "")
    assert err.startswith("sluice schedule trigger: error: no schedule 'nope' in ")


# ---------------------------------------------------------------------------- backfill


def test_backfill_runs_every_fire_time_in_the_range_once(store, capsys):
    add(capsys, store, "hourly", "0 * * * *", "--param", "scale=2")
    code, out, err = sluice_cli(capsys, "backfill", "hourly", "--start", "2026-01-01T00:00",
                                "--end", "2026-01-01T05:00", "--storage", store)
    assert (code, err) == (0, "")
    hours = [f"2026-01-01T{h:02d}:00:00+00:00" for h in range(8)]
    assert [fields(line) for line in out.splitlines()] == [
        *(["hourly", t, "SUCCESSFUL", f"hourly@{t}"] for t in hours[:6]),
        [("backfilled 'hourly': 6 fire time(s) in [2026-01-01T00:00:00+00:00, "
          "2026-01-01T05:00:00+00:00], 6 ran, 0 already recorded, 0 not successful")]]
    # An overlapping range runs only the times not recorded yet.
    code, out, _ = sluice_cli(capsys, "backfill", "hourly", "--start", "2026-01-01T03:00Z",
                              "--end", "2026-01-01T07:30Z", "--storage", store)
    assert code == 0
    assert [fields(line)[1] for line in out.splitlines()[:-1]] == hours[6:]
    assert out.splitlines()[-1].endswith("5 fire time(s) in [2026-01-01T03:00:00+00:00, "
                                         "2026-01-01T07:30:00+00:00], 2 ran, 3 already "
                                         "recorded, 0 not successful")
    storage = WorkflowStorage(store)
    assert [(f["logical_time"], f["outcome"]) for f in storage.fires("hourly")] == [
        (t, "SUCCESSFUL") for t in hours]
    assert workflow.get_output(f"hourly@{hours[7]}", storage=store) == 12   # sum(range(4)) * 2
    assert storage.get_schedule("hourly")["last_logical_time"] is None


def test_backfill_reads_times_without_an_offset_in_the_schedules_timezone(store, capsys):
    add(capsys, store, "paris", "0 6 * * *", "--timezone", "Europe/Paris")
    code, out, _ = sluice_cli(capsys, "backfill", "paris", "--start", "2026-03-28",
                              "--end", "2026-03-30T06:00", "--storage", store)
    assert code == 0
    # 06:00 in Paris is 05:00 UTC before the clocks go forward on the 29th, 04:00 after.
    assert [fields(line)[1] for line in out.splitlines()[:-1]] == [
        "2026-03-28T05:00:00+00:00", "2026-03-29T04:00:00+00:00", "2026-03-30T04:00:00+00:00"]


@pytest.mark.parametrize("start, end, message", [
    ("2026-01-02", "2026-01-01", "--start 2026-01-02 is after --end 2026-01-01; give START <= END"),
    ("yesterday", "2026-01-01", "--start 'yesterday' is not an ISO 8601 date or time"),
])
def test_backfill_refuses_a_bad_range(store, capsys, start, end, message):
    add(capsys, store, "hourly", "0 * * * *")
    code, out, err = sluice_cli(capsys, "backfill", "hourly", "--start", start, "--end", end,
                                "--storage", store)
    assert (code, out) == (2, "")
    assert err.startswith(f"sluice backfill: error: {message}")


# ------------------------------------------------------------------------- run context
# A schedule's target learns which run it is: logical_time (the fire time, in the schedule's
# timezone) and data_interval (from the fire time before it to the logical time).


def paris(day: int, month: int = 11) -> str:
    """2026-MM-DD 02:00 in Paris (+01:00 after the clocks went back on 10-25)."""
    return f"2026-{month:02d}-{day:02d}T02:00:00+01:00"


def test_backfill_of_seven_dates_runs_each_day_once_with_its_own_logical_time(
        store, capsys, jobs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    add(capsys, store, "nightly", "0 2 * * *", "--timezone", "Europe/Paris",
        "--param", f"out={out}", target=f"{MODULE}:daily")
    done = console(jobs, tmp_path / "bin", "backfill", "nightly", "--start", "2026-11-01",
                   "--end", "2026-11-07", "--storage", store)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    # --end 2026-11-07, a date, includes that whole day: 7 runs, not 6.
    *lines, summary = done.stdout.splitlines()
    utc = [f"2026-11-{d:02d}T01:00:00+00:00" for d in range(1, 8)]
    assert [fields(line) for line in lines] == [
        ["nightly", t, "SUCCESSFUL", f"nightly@{t}"] for t in utc]
    assert summary == ("backfilled 'nightly': 7 fire time(s) in [2026-10-31T23:00:00+00:00, "
                       "2026-11-07T23:00:00+00:00), 7 ran, 0 already recorded, 0 not successful")
    # Each run wrote its own day's file, with its logical time and data interval.
    intervals = [(paris(31, 10) if d == 1 else paris(d - 1), paris(d)) for d in range(1, 8)]
    assert sorted(p.name for p in out.iterdir()) == [
        f"usage_2026-11-{d:02d}.txt" for d in range(1, 8)]
    for d, (start, end) in zip(range(1, 8), intervals):
        assert (out / f"usage_2026-11-{d:02d}.txt").read_text() == f"{paris(d)} {start} {end}"
    storage = WorkflowStorage(store)
    for t, (start, end) in zip(utc, intervals):
        assert workflow.get_output(f"nightly@{t}", storage=store) == [end, start, end]
        assert storage.get_run(f"nightly@{t}")["logical_time"] == t


def test_a_date_end_covers_its_day_and_a_time_end_includes_a_fire_exactly_at_it(store, capsys):
    add(capsys, store, "hourly", "0 * * * *")
    code, out, _ = sluice_cli(capsys, "backfill", "hourly", "--start", "2026-01-01T22:00",
                              "--end", "2026-01-01", "--storage", store)
    assert code == 0
    assert [fields(line)[1] for line in out.splitlines()[:-1]] == [
        "2026-01-01T22:00:00+00:00", "2026-01-01T23:00:00+00:00"]   # not 01-02T00:00
    code, out, _ = sluice_cli(capsys, "backfill", "hourly", "--start", "2026-01-02",
                              "--end", "2026-01-02T01:00", "--storage", store)
    assert [fields(line)[1] for line in out.splitlines()[:-1]] == [
        "2026-01-02T00:00:00+00:00", "2026-01-02T01:00:00+00:00"]
    assert out.splitlines()[-1].startswith(
        "backfilled 'hourly': 2 fire time(s) in [2026-01-02T00:00:00+00:00, "
        "2026-01-02T01:00:00+00:00], 2 ran")


def test_trigger_passes_the_logical_time_now_or_the_one_given(store, capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    add(capsys, store, "nightly", "0 2 * * *", "--timezone", "Europe/Paris",
        "--param", f"out={out}", target=f"{MODULE}:daily")
    code, printed, err = sluice_cli(capsys, "schedule", "trigger", "nightly", "--logical-time",
                                    "2026-11-03T02:00", "--storage", store)
    assert (code, err) == (0, "")
    line, output = printed.splitlines()
    assert fields(line) == ["nightly", "2026-11-03T01:00:00+00:00", "SUCCESSFUL",
                            "nightly@2026-11-03T01:00:00+00:00"]
    assert output == str([paris(3), paris(2), paris(3)])
    # Now: the logical time is the trigger's instant, the interval starts at the last 02:00.
    before = datetime.now(timezone.utc)
    code, printed, err = sluice_cli(capsys, "schedule", "trigger", "nightly", "--storage", store)
    assert (code, err) == (0, "")
    logical, start, end = eval(printed.splitlines()[1])
    logical, start = datetime.fromisoformat(logical), datetime.fromisoformat(start)
    assert end == logical.isoformat()
    assert before <= logical <= datetime.now(timezone.utc)
    local = start.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute, local.utcoffset()) == (2, 0, start.utcoffset())
    assert timedelta(0) < logical - start <= timedelta(hours=25)
    # A logical time that has a run already is refused, naming it.
    code, printed, err = sluice_cli(capsys, "schedule", "trigger", "nightly", "--logical-time",
                                    "2026-11-03T01:00Z", "--storage", store)
    assert (code, printed) == (2, "")
    assert err == ("sluice schedule trigger: error: schedule 'nightly' has a fire at "
                   "2026-11-03T01:00:00+00:00 already (SUCCESSFUL, workflow "
                   "nightly@2026-11-03T01:00:00+00:00); resume that run, or give another "
                   "--logical-time\n")


def test_resume_replays_the_logical_time_the_run_started_with(store, capsys, tmp_path):
    gate = tmp_path / "gate"
    add(capsys, store, "gated", "0 2 * * *", "--timezone", "Europe/Paris",
        "--param", f"gate={gate}", target=f"{MODULE}:gated_daily")
    code, printed, _ = sluice_cli(capsys, "schedule", "trigger", "gated", "--logical-time",
                                  "2026-11-05T02:00", "--storage", store)
    workflow_id = "gated@2026-11-05T01:00:00+00:00"
    assert code == 1
    assert fields(printed)[2:4] == ["FAILED", workflow_id]
    gate.touch()
    code, printed, err = sluice_cli(capsys, "workflow", "resume", workflow_id, "--storage", store)
    assert (code, err) == (0, "")
    assert printed == f"{workflow_id}  SUCCESSFUL\n{[paris(5), paris(4), paris(5)]}\n"
    assert WorkflowStorage(store).get_run(workflow_id)["logical_time"] == (
        "2026-11-05T01:00:00+00:00")


def test_a_dag_target_reads_the_run_context_as_keyword_input(store, capsys):
    add(capsys, store, "by-input", "0 6 * * 1", target=f"{MODULE}:reads_input")   # Mondays
    code, printed, err = sluice_cli(capsys, "schedule", "trigger", "by-input", "--logical-time",
                                    "2026-11-09T06:00", "--storage", store)
    assert (code, err) == (0, "")
    assert printed.splitlines()[1] == str(["2026-11-09T06:00:00+00:00",
                                           "2026-11-02T06:00:00+00:00",
                                           "2026-11-09T06:00:00+00:00"])


def test_a_fired_run_gets_its_tick_as_logical_time(store, capsys, tmp_path):
    from sluice.libs.workflow.scheduler import Scheduler

    out = tmp_path / "out"
    out.mkdir()
    add(capsys, store, "nightly", "0 2 * * *", "--timezone", "Europe/Paris",
        "--param", f"out={out}", target=f"{MODULE}:daily")
    storage = WorkflowStorage(store)
    clock = datetime(2030, 1, 2, 12, tzinfo=timezone.utc)   # after its creation: a tick is due
    (handled,) = Scheduler(storage, clock=lambda: clock).tick()   # the default launcher
    workflow_id = "nightly@2030-01-02T01:00:00+00:00"
    assert handled[2] == "RUNNING"
    deadline = time.monotonic() + 60
    while storage.status(workflow_id) is WorkflowStatus.RUNNING:
        assert time.monotonic() < deadline, "the fired run did not end"
        time.sleep(0.05)
    assert workflow.get_output(workflow_id, storage=store) == [
        "2030-01-02T02:00:00+01:00", "2030-01-01T02:00:00+01:00", "2030-01-02T02:00:00+01:00"]


@pytest.mark.parametrize("args, message", [
    (["--param", "logical_time=2026-11-01"],
     f"schedule target '{MODULE}:pipeline': params ['logical_time'] are set by the scheduler "
     f"for each run"),
])
def test_params_cannot_take_the_place_of_the_run_context(store, capsys, args, message):
    code, out, err = sluice_cli(capsys, "schedule", "add", "bad", "--target", f"{MODULE}:pipeline",
                                "--cron", "@daily", *args, "--storage", store)
    assert (code, out) == (2, "")
    assert err.startswith(f"sluice schedule add: error: {message}"), err


# ----------------------------------------------------------------- storage that is not there
# Only `schedule add` and `scheduler` create a storage: every other command, given a folder
# with none (a typo), says so on one line, exits 2, and creates nothing.

TYPO_COMMANDS = [
    ["schedule", "list"], ["schedule", "pause", "x"], ["schedule", "resume", "x"],
    ["schedule", "remove", "x"], ["schedule", "trigger", "x"],
    ["backfill", "x", "--start", "2026-01-01", "--end", "2026-01-02"],
    ["workflow", "list"], ["workflow", "show", "x"], ["workflow", "resume", "x"],
    ["workflow", "cancel", "x"],
]


def no_storage(path: Path) -> str:
    return (f"no workflow storage at {str(path)!r} (no workflows.db there: nothing was run or "
            f"scheduled with it); check the path, or pass the folder your runs use")


@pytest.mark.parametrize("command", TYPO_COMMANDS, ids=" ".join)
def test_commands_that_read_a_storage_do_not_create_one(capsys, tmp_path, command):
    typo = tmp_path / "wrokflows"
    code, out, err = sluice_cli(capsys, *command, "--storage", str(typo))
    assert (code, out) == (2, "")
    assert err.startswith(f"sluice {' '.join(command[:2] if command[0] != 'backfill' else command[:1])}"
                          f": error: {no_storage(typo)}"), err
    assert err.count("\n") == 1
    assert not typo.exists()
    # A folder that exists but holds no storage is not one either, and gets no database.
    (tmp_path / "empty").mkdir()
    code, _, err = sluice_cli(capsys, *command, "--storage", str(tmp_path / "empty"))
    assert code == 2 and no_storage(tmp_path / "empty") in err
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_mistyped_storage_is_reported_by_the_console_script_and_not_created(jobs, tmp_path):
    typo = tmp_path / "wrokflows"
    for command in (["workflow", "list"], ["schedule", "list"]):
        done = console(jobs, tmp_path / "bin", *command, "--storage", str(typo))
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (f"sluice {' '.join(command)}: error: {no_storage(typo)} (by "
                               f"default {str(Path.home() / '.sluice' / 'workflows')!r}) with "
                               f"--storage (storage= in Python)\n")
        assert not typo.exists()
    # No --storage: the default folder ($SLUICE_WORKFLOW_STORAGE here) is named as such.
    default = tmp_path / "default"
    done = console(jobs, tmp_path / "bin", "workflow", "list",
                   env={"SLUICE_WORKFLOW_STORAGE": str(default)})
    assert done.returncode == 2
    assert done.stderr == (f"sluice workflow list: error: no workflow storage at "
                           f"{str(default)!r}, the default (no workflows.db there: nothing was "
                           f"run or scheduled with it); pass the folder your runs use with "
                           f"--storage (storage= in Python) or set $SLUICE_WORKFLOW_STORAGE\n")
    assert not default.exists()


def test_calls_that_read_a_storage_do_not_create_one(tmp_path):
    from sluice.libs.workflow.storage import StorageNotFoundError

    typo = tmp_path / "wrokflows"
    for call in (lambda: workflow.list_all(storage=typo),
                 lambda: workflow.get_status("x", storage=typo),
                 lambda: workflow.get_output("x", storage=typo),
                 lambda: workflow.resume("x", storage=typo),
                 lambda: workflow.cancel("x", storage=typo),
                 lambda: workflow.delete("x", storage=typo)):
        with pytest.raises(StorageNotFoundError, match=re.escape(no_storage(typo))):
            call()
    assert not typo.exists()


# ---------------------------------------------------------------------------- workflow


def test_workflow_list_show_and_cancel(store, capsys, tmp_path):
    jobs = __import__(MODULE)
    assert workflow.run(jobs.pipeline(), workflow_id="ok", storage=store) == 6
    with pytest.raises(workflow.WorkflowError):
        workflow.run(jobs.broken(), workflow_id="bad", storage=store)
    gate = tmp_path / "gate"
    # Driven by a thread of this process (run_async would drive it from a worker process:
    # see the note on sluice_cli).
    ended: list[BaseException] = []

    def drive() -> None:
        try:
            workflow.run(jobs.gated(str(gate)), workflow_id="live", storage=store)
        except BaseException as exc:  # noqa: BLE001 - the test checks it
            ended.append(exc)

    driver = threading.Thread(target=drive)
    driver.start()
    storage = WorkflowStorage(store)
    deadline = time.monotonic() + 60
    while not any(s["name"] == "held" for s in storage.steps("live")):
        assert time.monotonic() < deadline, "the run's second step never started"
        time.sleep(0.02)

    code, out, _ = sluice_cli(capsys, "workflow", "list", "--storage", store)
    assert code == 0
    assert [fields(line)[:2] + fields(line)[3:] for line in out.splitlines()] == [
        ["WORKFLOW", "STATUS", "SCHEDULE"], ["ok", "SUCCESSFUL", "-"], ["bad", "FAILED", "-"],
        ["live", "RUNNING", "-"]]
    code, out, _ = sluice_cli(capsys, "workflow", "list", "--status", "failed", "--storage", store)
    assert [fields(line)[0] for line in out.splitlines()] == ["WORKFLOW", "bad"]

    code, out, _ = sluice_cli(capsys, "workflow", "show", "bad", "--storage", store)
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ["workflow  bad", "status    FAILED"]
    assert "error     WorkflowError: workflow 'bad': step boom (" in out
    step = fields(lines[-1])
    assert (step[0], step[2], step[3], step[5]) == ("boom", "FAILED", "1", "RuntimeError: boom 1")
    assert step[1].startswith("boom-") and step[4].endswith("s")

    assert sluice_cli(capsys, "workflow", "cancel", "live", "--storage", store) == (
        0, "canceled live (its driver stops at its next step)\n", "")
    driver.join(timeout=60)
    assert [type(exc) for exc in ended] == [workflow.WorkflowCancelledError]
    gate.touch()  # lets the abandoned step end, freeing its worker
    assert storage.status("live") is WorkflowStatus.CANCELED
    assert sluice_cli(capsys, "workflow", "cancel", "ok", "--storage", store) == (
        2, "", ("sluice workflow cancel: error: workflow 'ok' is SUCCESSFUL; only a RUNNING or "
                "RESUMABLE run can be canceled\n"))
    for action in ("show", "resume", "cancel"):
        code, out, err = sluice_cli(capsys, "workflow", action, "nope", "--storage", store)
        assert (code, out) == (2, "")
        assert err.startswith(f"sluice workflow {action}: error: no workflow 'nope' in ")


# ---------------------------------------------------------------------------- the daemon


def start_scheduler(jobs: Path, tmp_path: Path, store: str) -> subprocess.Popen:
    """``sluice scheduler`` as the console script runs it: from the jobs folder, which is on
    its sys.path only because the command puts the current directory there."""
    script = tmp_path / "bin" / "sluice"
    script.parent.mkdir(exist_ok=True)
    script.write_text(CONSOLE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script), "scheduler", "--storage", store,
                             "--poll", "0.1", "--num-cpus", "2"],
                            cwd=jobs, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def stop_scheduler(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM it; its output once it exited (it does not wait for the runs in flight: a
    held one stays held)."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=60)


def wait_until(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the scheduler exited with {proc.returncode}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def killpg_after():
    procs: list[subprocess.Popen] = []
    yield procs.append
    for proc in procs:
        if proc.poll() is None:   # a failed test: take the daemon and its workers down
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_scheduler_fires_a_seconds_schedule_and_stops_on_sigterm(store, capsys, jobs,
                                                                     tmp_path, killpg_after):
    add(capsys, store, "tick", "* * * * * *")
    storage = WorkflowStorage(store)

    def successful() -> int:
        return sum(f["outcome"] == "SUCCESSFUL" for f in storage.fires("tick"))

    proc = start_scheduler(jobs, tmp_path, store)
    killpg_after(proc)
    wait_until(lambda: successful() >= 3, proc, 60.0, "3 successful runs of '* * * * * *'")
    out, err = stop_scheduler(proc)
    assert proc.returncode == 0, err
    assert err.splitlines()[-1] == "sluice scheduler: stopped"

    fires = storage.fires("tick")
    runs = {f["workflow_id"]: f for f in fires if f["outcome"] != "SKIPPED_OVERLAP"}
    assert sum(f["outcome"] == "SUCCESSFUL" for f in fires) >= 3
    # Nothing is left RUNNING: a run in flight at the stop is RESUMABLE, as is its fire record.
    assert {f["outcome"] for f in runs.values()} <= {"SUCCESSFUL", "RESUMABLE"}
    for workflow_id, fire in runs.items():
        assert storage.status(workflow_id).value == fire["outcome"]
        assert storage.get_run(workflow_id)["logical_time"] == fire["logical_time"]
    # One line when a run fires, one when it ends; each names schedule, logical time, outcome.
    printed = [fields(line) for line in out.splitlines()]
    for workflow_id, fire in runs.items():
        mine = [line[2] for line in printed if line[3] == workflow_id]
        assert mine == ["RUNNING", fire["outcome"]], out
        assert workflow_id == f"tick@{fire['logical_time']}"
    assert all(line[0] == "tick" for line in printed)


def test_a_run_in_flight_when_the_scheduler_stops_is_resumable_and_resumes(
        store, capsys, jobs, tmp_path, killpg_after):
    gate = tmp_path / "gate"
    add(capsys, store, "held", "* * * * * *", "--param", f"gate={gate}",
        target=f"{MODULE}:gated")
    storage = WorkflowStorage(store)

    def held_step_running() -> bool:
        runs = [f["workflow_id"] for f in storage.fires("held") if f["outcome"] == "RUNNING"]
        return any(s["name"] == "held" and s["status"] is StepStatus.RUNNING
                   for run in runs for s in storage.steps(run))

    proc = start_scheduler(jobs, tmp_path, store)
    killpg_after(proc)
    wait_until(held_step_running, proc, 60.0, "the run's held step started")
    wait_until(lambda: any(f["outcome"] == "SKIPPED_OVERLAP" for f in storage.fires("held")),
               proc, 60.0, "a fire skipped while the run is in flight")
    out, err = stop_scheduler(proc)
    assert proc.returncode == 0, err
    (fire,) = [f for f in storage.fires("held") if f["outcome"] != "SKIPPED_OVERLAP"]
    workflow_id = fire["workflow_id"]
    assert fire["outcome"] == "RESUMABLE"
    assert storage.status(workflow_id) is WorkflowStatus.RESUMABLE
    assert out.splitlines()[-1] == f"held  {fire['logical_time']}  RESUMABLE  {workflow_id}"

    gate.touch()
    assert sluice_cli(capsys, "workflow", "resume", workflow_id, "--storage", store) == (
        0, f"{workflow_id}  SUCCESSFUL\n[0, 1, 2]\n", "")
    # Found by its id, not by position: the fires skipped while it was in flight come after it.
    resumed = {f["workflow_id"]: f["outcome"] for f in storage.fires("held")
               if f["outcome"] != "SKIPPED_OVERLAP"}
    assert resumed == {workflow_id: "SUCCESSFUL"}
    code, out, _ = sluice_cli(capsys, "workflow", "show", workflow_id, "--storage", store)
    assert code == 0
    steps = {fields(line)[0]: fields(line)[2:4] for line in out.splitlines()[-2:]}
    assert steps == {"numbers": ["SUCCESSFUL", "1"], "held": ["SUCCESSFUL", "2"]}


def test_list_all_with_no_default_storage_yet_is_empty_and_creates_nothing(tmp_path, monkeypatch):
    # A Ray program calls list_all() before any run: it gets [], and nothing is created.
    monkeypatch.delenv("SLUICE_WORKFLOW_STORAGE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert workflow.list_all() == []
    assert not (tmp_path / ".sluice").exists()
