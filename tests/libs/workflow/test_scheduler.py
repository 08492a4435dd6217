"""The scheduler (sluice/libs/workflow/scheduler.py) over a real storage folder, with an
injected clock and a launcher that creates each run in storage and records the call."""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sluice.dsl.nodes import DAGNode
from sluice.libs.workflow.scheduler import (
    LAUNCH_FAILED,
    SKIPPED_OVERLAP,
    WAITING,
    Scheduler,
    TargetError,
    load_target,
    run_context,
    scheduled_workflow_id,
)
from sluice.libs.workflow.status import WorkflowStatus
from sluice.libs.workflow.storage import WorkflowStorage

RUNNING = WorkflowStatus.RUNNING.value
NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def every(start: datetime, step: timedelta, count: int) -> list[datetime]:
    return [start + i * step for i in range(count)]


class Clock:
    """A settable clock: the scheduler reads ``now``."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Launcher:
    """Records each launch; with ``create_runs`` it also creates the run (RUNNING, this
    process its live driver), as the engine's launcher does, so overlaps are counted."""

    def __init__(self, storage: WorkflowStorage, create_runs: bool = True):
        self.storage, self.create_runs = storage, create_runs
        self.calls: list[tuple[str, datetime, str]] = []

    def __call__(self, schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        self.calls.append((schedule["name"], logical_time, workflow_id))
        if self.create_runs:
            self.storage.create_run(workflow_id, b"dag", schedule_name=schedule["name"],
                                    logical_time=logical_time.isoformat())

    def times(self, name: str) -> list[datetime]:
        return [t for n, t, _ in self.calls if n == name]

    def finish(self, status: WorkflowStatus = WorkflowStatus.SUCCESSFUL) -> None:
        for _, _, workflow_id in self.calls:
            if self.storage.status(workflow_id) is WorkflowStatus.RUNNING:
                self.storage.set_status(workflow_id, status)


@pytest.fixture
def storage(tmp_path: Path) -> WorkflowStorage:
    return WorkflowStorage(tmp_path / "workflows")


def add(storage: WorkflowStorage, name: str, cron: str, tz: str = "UTC", *, start: datetime | None,
        catchup: bool = False, max_active_runs: int = 1) -> None:
    """Add a schedule whose last fired logical time is ``start`` (None: it never fired)."""
    storage.add_schedule(name, "unused:target", cron, tz, {}, catchup, max_active_runs)
    if start is not None:
        storage.set_last_logical_time(name, start.isoformat())


def walk(scheduler: Scheduler, clock: Clock, until: datetime, step: timedelta) -> list[tuple]:
    """Tick at every ``step`` up to ``until``; everything the ticks handled, with the tick time."""
    handled = []
    while clock.now < until:
        clock.now = min(clock.now + step, until)
        handled += [(*item, clock.now) for item in scheduler.tick()]
    return handled


# --------------------------------------------------------------------------- DST


def test_spring_forward_no_run_skipped_or_doubled(storage: WorkflowStorage):
    start = utc(2026, 3, 7, 12)
    add(storage, "daily-0230", "30 2 * * *", NY, start=start)
    add(storage, "hourly", "0 * * * *", NY, start=start)
    add(storage, "half-hourly", "*/30 * * * *", NY, start=start)
    clock = Clock(start)
    launcher = Launcher(storage, create_runs=False)
    handled = walk(Scheduler(storage, clock, launcher), clock, utc(2026, 3, 9, 12), timedelta(minutes=10))

    # 02:30 does not exist on Mar 8: 03:00 EDT (the end of the gap); then 02:30 EDT on Mar 9
    assert launcher.times("daily-0230") == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    # one fire per elapsed hour / half hour straight through the change (07:00Z is 03:00 EDT)
    assert launcher.times("hourly") == every(utc(2026, 3, 7, 13), timedelta(hours=1), 48)
    assert launcher.times("half-hourly") == every(utc(2026, 3, 7, 12, 30), timedelta(minutes=30), 96)
    # each fired at the first tick at or after its logical time, none skipped
    assert all(tick - timedelta(minutes=10) < lt <= tick for _, lt, outcome, tick in handled)
    assert {outcome for *_, outcome, _ in handled} == {RUNNING}
    fires = storage.fires("daily-0230")
    assert [(f["logical_time"], f["workflow_id"], f["outcome"]) for f in fires] == [
        ("2026-03-08T07:00:00+00:00", "daily-0230@2026-03-08T07:00:00+00:00", RUNNING),
        ("2026-03-09T06:30:00+00:00", "daily-0230@2026-03-09T06:30:00+00:00", RUNNING),
    ]


def test_fall_back_no_run_skipped_or_doubled(storage: WorkflowStorage):
    start = utc(2026, 10, 31, 12)
    add(storage, "daily-0230", "30 2 * * *", NY, start=start)
    add(storage, "daily-0130", "30 1 * * *", NY, start=start)
    add(storage, "hourly", "0 * * * *", NY, start=start)
    add(storage, "half-hourly", "*/30 * * * *", NY, start=start)
    clock = Clock(start)
    launcher = Launcher(storage, create_runs=False)
    walk(Scheduler(storage, clock, launcher), clock, utc(2026, 11, 2, 12), timedelta(minutes=10))

    assert launcher.times("daily-0230") == [utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]
    # 01:30 comes twice on Nov 1 (05:30Z EDT, 06:30Z EST): it fires at the first only
    assert launcher.times("daily-0130") == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # 01:00 EDT (05:00Z) and 01:00 EST (06:00Z) both fire: one run per elapsed hour
    assert launcher.times("hourly") == every(utc(2026, 10, 31, 13), timedelta(hours=1), 48)
    assert launcher.times("half-hourly") == every(utc(2026, 10, 31, 12, 30), timedelta(minutes=30), 96)
    ids = [workflow_id for *_, workflow_id in launcher.calls]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------ missed runs


def test_downtime_without_catchup_fires_only_the_latest(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=utc(2026, 5, 1))
    clock = Clock(utc(2026, 5, 1, 5, 30))
    launcher = Launcher(storage, create_runs=False)
    scheduler = Scheduler(storage, clock, launcher)

    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 5), RUNNING)]
    assert [f["logical_time"] for f in storage.fires("hourly")] == ["2026-05-01T05:00:00+00:00"]
    assert scheduler.tick() == []
    clock.now = utc(2026, 5, 1, 6)
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 6), RUNNING)]


def test_downtime_with_catchup_fires_every_missed_run_in_order(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=utc(2026, 5, 1), catchup=True, max_active_runs=10)
    clock = Clock(utc(2026, 5, 1, 5, 30))
    launcher = Launcher(storage)
    scheduler = Scheduler(storage, clock, launcher)

    expected = every(utc(2026, 5, 1, 1), timedelta(hours=1), 5)
    assert scheduler.tick() == [("hourly", t, RUNNING) for t in expected]
    assert launcher.times("hourly") == expected
    assert [c[2] for c in launcher.calls] == [f"hourly@2026-05-01T0{h}:00:00+00:00" for h in range(1, 6)]
    assert storage.get_schedule("hourly")["last_logical_time"] == "2026-05-01T05:00:00+00:00"


def test_a_schedule_that_never_fired_starts_from_its_creation(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=None)
    created = datetime.fromtimestamp(storage.get_schedule("hourly")["created"], timezone.utc)
    clock = Clock(created + timedelta(hours=2))
    scheduler = Scheduler(storage, clock, Launcher(storage))

    [(_, logical_time, outcome)] = scheduler.tick()
    assert logical_time == (created + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    assert outcome == RUNNING


def test_paused_schedule_does_not_fire_and_resumes_with_the_latest(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=utc(2026, 5, 1))
    storage.set_paused("hourly", True)
    clock = Clock(utc(2026, 5, 1, 3))
    scheduler = Scheduler(storage, clock, Launcher(storage))

    assert scheduler.tick() == []
    storage.set_paused("hourly", False)
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 3), RUNNING)]


# ------------------------------------------------------------------ overlap


def test_overlap_skips_a_run_while_the_last_is_still_running(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=utc(2026, 5, 1))
    clock = Clock(utc(2026, 5, 1, 1))
    launcher = Launcher(storage)
    scheduler = Scheduler(storage, clock, launcher)

    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 1), RUNNING)]
    clock.now = utc(2026, 5, 1, 2)
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 2), SKIPPED_OVERLAP)]
    assert storage.get_schedule("hourly")["last_logical_time"] == "2026-05-01T02:00:00+00:00"
    launcher.finish()
    clock.now = utc(2026, 5, 1, 3)
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 3), RUNNING)]

    fires = [(f["logical_time"][11:16], f["workflow_id"], f["outcome"]) for f in storage.fires("hourly")]
    assert fires == [
        ("01:00", "hourly@2026-05-01T01:00:00+00:00", "SUCCESSFUL"),  # kept current by storage
        ("02:00", None, SKIPPED_OVERLAP),
        ("03:00", "hourly@2026-05-01T03:00:00+00:00", RUNNING),
    ]
    assert len(launcher.calls) == 2


def test_max_active_runs_two_allows_two_at_once(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=utc(2026, 5, 1), max_active_runs=2)
    clock = Clock(utc(2026, 5, 1))
    handled = walk(Scheduler(storage, clock, Launcher(storage)), clock, utc(2026, 5, 1, 3),
                   timedelta(hours=1))
    assert [outcome for _, _, outcome, _ in handled] == [RUNNING, RUNNING, SKIPPED_OVERLAP]


def test_overlap_with_catchup_waits_then_fires_in_order(storage: WorkflowStorage):
    add(storage, "hourly", "0 * * * *", start=utc(2026, 5, 1), catchup=True)
    clock = Clock(utc(2026, 5, 1, 3, 30))
    launcher = Launcher(storage)
    scheduler = Scheduler(storage, clock, launcher)

    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 1), RUNNING),
                                ("hourly", utc(2026, 5, 1, 2), WAITING)]
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 2), WAITING)]
    assert [f["logical_time"][11:16] for f in storage.fires("hourly")] == ["01:00"]
    launcher.finish()
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 2), RUNNING),
                                ("hourly", utc(2026, 5, 1, 3), WAITING)]
    launcher.finish()
    assert scheduler.tick() == [("hourly", utc(2026, 5, 1, 3), RUNNING)]
    assert launcher.times("hourly") == every(utc(2026, 5, 1, 1), timedelta(hours=1), 3)


# ------------------------------------------------------------------ seconds, sharing, failures


def test_six_field_schedule_fires_every_two_seconds(storage: WorkflowStorage):
    start = utc(2026, 5, 1, 12)
    add(storage, "fast", "*/2 * * * * *", start=start)
    clock = Clock(start)
    launcher = Launcher(storage, create_runs=False)
    walk(Scheduler(storage, clock, launcher), clock, start + timedelta(seconds=9),
         timedelta(milliseconds=500))
    assert launcher.times("fast") == every(start + timedelta(seconds=2), timedelta(seconds=2), 4)


def test_two_schedulers_on_one_storage_fire_each_time_once(storage: WorkflowStorage, tmp_path: Path):
    add(storage, "half-hourly", "*/30 * * * *", start=utc(2026, 5, 1))
    clock = Clock(utc(2026, 5, 1))
    launchers = [Launcher(storage, create_runs=False) for _ in range(2)]
    # The second uses its own handle (its own connection) on the same folder.
    schedulers = [Scheduler(storage, clock, launchers[0]),
                  Scheduler(str(tmp_path / "workflows"), clock, launchers[1])]
    for _ in range(8):
        clock.now += timedelta(minutes=15)
        for scheduler in schedulers:
            scheduler.tick()
    fired = sorted(launchers[0].times("half-hourly") + launchers[1].times("half-hourly"))
    assert fired == every(utc(2026, 5, 1, 0, 30), timedelta(minutes=30), 4)


def test_a_failing_launch_is_recorded_and_others_still_fire(storage: WorkflowStorage):
    add(storage, "broken", "0 * * * *", start=utc(2026, 5, 1))
    add(storage, "fine", "0 * * * *", start=utc(2026, 5, 1))
    launcher = Launcher(storage)

    def launch(schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        if schedule["name"] == "broken":
            raise RuntimeError("target no longer imports")
        launcher(schedule, logical_time, workflow_id)

    clock = Clock(utc(2026, 5, 1, 1))
    scheduler = Scheduler(storage, clock, launch)
    assert scheduler.tick() == [("broken", utc(2026, 5, 1, 1), LAUNCH_FAILED),
                                ("fine", utc(2026, 5, 1, 1), RUNNING)]
    assert [f["outcome"] for f in storage.fires("broken")] == [LAUNCH_FAILED]
    assert scheduler.tick() == []  # not retried


def test_a_schedule_removed_while_it_fires_stops_quietly(storage: WorkflowStorage):
    add(storage, "once", "0 * * * *", start=utc(2026, 5, 1), catchup=True, max_active_runs=5)
    launcher = Launcher(storage, create_runs=False)

    def launch_then_remove(schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        launcher(schedule, logical_time, workflow_id)
        storage.remove_schedule(schedule["name"])

    scheduler = Scheduler(storage, Clock(utc(2026, 5, 1, 3)), launch_then_remove)
    assert scheduler.tick() == [("once", utc(2026, 5, 1, 1), RUNNING)]
    assert scheduler.tick() == [] and len(launcher.calls) == 1


def test_a_stored_schedule_with_a_bad_timezone_is_skipped_and_logged_once(
        storage: WorkflowStorage, caplog: pytest.LogCaptureFixture):
    add(storage, "bad-zone", "0 * * * *", "Mars/Olympus_Mons", start=utc(2026, 5, 1))
    add(storage, "good", "0 * * * *", start=utc(2026, 5, 1))
    clock = Clock(utc(2026, 5, 1, 1))
    scheduler = Scheduler(storage, clock, Launcher(storage, create_runs=False))
    with caplog.at_level(logging.WARNING, logger="sluice.libs.workflow.scheduler"):
        assert scheduler.tick() == [("good", utc(2026, 5, 1, 1), RUNNING)]
        clock.now = utc(2026, 5, 1, 2)
        assert scheduler.tick() == [("good", utc(2026, 5, 1, 2), RUNNING)]
    assert [r.getMessage() for r in caplog.records] == [
        ("schedule 'bad-zone' cannot fire: unknown timezone 'Mars/Olympus_Mons'; give an IANA name "
        "such as 'UTC', 'Europe/Paris' or 'America/New_York' (zoneinfo.available_timezones() "
        "lists them)")
    ]


def test_run_forever_ticks_until_stopped(storage: WorkflowStorage):
    add(storage, "every-second", "* * * * * *", start=utc(2026, 5, 1))
    stop = threading.Event()
    clock_calls = []

    def clock() -> datetime:
        clock_calls.append(None)
        return utc(2026, 5, 1) + timedelta(seconds=len(clock_calls))

    launcher = Launcher(storage, create_runs=False)

    def launch(schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        launcher(schedule, logical_time, workflow_id)
        if len(launcher.calls) == 3:
            stop.set()

    Scheduler(storage, clock, launch).run_forever(stop, poll_s=0)
    assert launcher.times("every-second") == every(utc(2026, 5, 1, 0, 0, 1), timedelta(seconds=1), 3)


def test_run_forever_reports_each_tick_and_survives_one_that_fails(
        storage: WorkflowStorage, caplog: pytest.LogCaptureFixture):
    add(storage, "every-second", "* * * * * *", start=utc(2026, 5, 1))
    stop = threading.Event()
    ticks = iter([utc(2026, 5, 1, 0, 0, 1), None, utc(2026, 5, 1, 0, 0, 2)])

    def clock() -> datetime:
        now = next(ticks)
        if now is None:
            raise OSError("database is locked")
        return now

    reported: list[list] = []

    def on_tick(handled: list) -> None:
        reported.append(handled)
        if len(reported) == 2:
            stop.set()

    scheduler = Scheduler(storage, clock, Launcher(storage, create_runs=False))
    with caplog.at_level(logging.ERROR, logger="sluice.libs.workflow.scheduler"):
        scheduler.run_forever(stop, poll_s=0, on_tick=on_tick)
    assert reported == [[("every-second", utc(2026, 5, 1, 0, 0, 1), RUNNING)],
                        [("every-second", utc(2026, 5, 1, 0, 0, 2), RUNNING)]]
    assert [r.getMessage() for r in caplog.records] == ["tick failed; trying again"]
    assert "OSError: database is locked" in caplog.text


def test_fire_off_the_timeline_claims_each_time_once_and_leaves_the_schedule_alone(
        storage: WorkflowStorage):
    add(storage, "nightly", "0 2 * * *", start=None, max_active_runs=1)
    launcher = Launcher(storage)
    scheduler = Scheduler(storage, launcher=launcher)
    schedule = storage.get_schedule("nightly")
    # Neither run waits for the other: max_active_runs is not consulted off the timeline.
    assert scheduler.fire(schedule, utc(2026, 4, 1, 2)) == RUNNING
    assert scheduler.fire(schedule, utc(2026, 4, 2, 2)) == RUNNING
    assert scheduler.fire(schedule, utc(2026, 4, 1, 2)) is None       # recorded already
    assert launcher.calls == [
        ("nightly", utc(2026, 4, 1, 2), scheduled_workflow_id("nightly", utc(2026, 4, 1, 2))),
        ("nightly", utc(2026, 4, 2, 2), scheduled_workflow_id("nightly", utc(2026, 4, 2, 2)))]
    assert storage.get_schedule("nightly")["last_logical_time"] is None
    assert storage.active_runs("nightly") == 2

    def broken(schedule: dict, logical_time: datetime, workflow_id: str) -> None:
        raise RuntimeError("target no longer imports")

    assert Scheduler(storage, launcher=broken).fire(schedule, utc(2026, 4, 3, 2)) == LAUNCH_FAILED
    assert [f["outcome"] for f in storage.fires("nightly")] == [RUNNING, RUNNING, LAUNCH_FAILED]


def test_naive_clock_is_refused(storage: WorkflowStorage):
    scheduler = Scheduler(storage, lambda: datetime(2026, 5, 1), Launcher(storage))
    with pytest.raises(TypeError, match=r"the scheduler's clock gave a naive datetime"):
        scheduler.tick()


def test_scheduled_workflow_id():
    assert scheduled_workflow_id("nightly", utc(2026, 3, 8, 7)) == "nightly@2026-03-08T07:00:00+00:00"


# --------------------------------------------------------------------------- targets


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real module of schedule targets on sys.path; yields its name."""
    folder = tmp_path_factory.mktemp("targets")
    (folder / "wf_sched_targets.py").write_text(textwrap.dedent("""
        import sluice

        @sluice.remote
        def add(x, y):
            return x + y

        def nightly(n=1):
            return add.bind(n, 2)

        dag = add.bind(1, 2)
        not_a_dag = 42

        def returns_int():
            return 3

        def boom():
            raise RuntimeError("no database")

        def dated(logical_time, n=1):
            return add.bind(n, logical_time.day)

        def windowed(*, data_interval):
            start, end = data_interval
            return add.bind(start.day, end.day)

        def open_kwargs(**params):
            return add.bind(len(params), 0)
    """))
    (folder / "wf_sched_broken.py").write_text("raise ImportError('needs pandas')\n")
    sys.path.insert(0, str(folder))
    yield "wf_sched_targets"
    sys.path.remove(str(folder))
    for name in ("wf_sched_targets", "wf_sched_broken"):
        sys.modules.pop(name, None)


def test_load_target_calls_the_function_with_params(targets: str):
    dag = load_target(f"{targets}:nightly", {"n": 5})
    assert isinstance(dag, DAGNode) and dag._bound_args == (5, 2)
    assert isinstance(load_target(f"{targets}:dag", {}), DAGNode)


@pytest.mark.parametrize(("target", "params", "message"), [
    ("no_colon", {}, (r"schedule target 'no_colon' is not MODULE:ATTR; name a module and an "
                      r"attribute in it, e.g. etl.jobs:nightly \(a function returning a DAG\)")),
    (None, {}, r"schedule target None is not MODULE:ATTR"),
    ("wf_sched_missing_mod:f", {}, (r"schedule target 'wf_sched_missing_mod:f': no module named "
                                   r"'wf_sched_missing_mod'; run from the directory that holds it")),
    ("wf_sched_broken:f", {}, (r"schedule target 'wf_sched_broken:f': module 'wf_sched_broken' "
                              r"does not import \(ImportError: needs pandas\); fix it")),
    ("{m}:nope", {}, (r"schedule target '{m}:nope': module '{m}' has no attribute 'nope'; its "
                      r"public names are add, boom, dag, dated, nightly, not_a_dag, open_kwargs, "
                      r"returns_int, sluice, windowed$")),
    ("{m}:not_a_dag", {}, r"schedule target '{m}:not_a_dag' is of type int: give a function returning a DAG"),
    ("{m}:returns_int", {}, (r"schedule target '{m}:returns_int' returned a value of type int, not a DAG; "
                            r"return the node built with .bind\(\)")),
    ("{m}:boom", {}, (r"schedule target '{m}:boom' raised RuntimeError: no database when called "
                     r"with params \{\}")),
    ("{m}:nightly", {"m": 1}, r"schedule target '{m}:nightly' raised TypeError"),
    ("{m}:dag", {"n": 1}, r"schedule target '{m}:dag' is a DAG, not a function, so it takes no params"),
])
def test_bad_targets_are_refused_naming_them(targets: str, target, params: dict, message: str):
    if isinstance(target, str):
        target = target.format(m=targets)
    with pytest.raises(TargetError, match=message.replace("{m}", targets)):
        load_target(target, params)


def test_a_target_gets_the_run_context_it_names_and_nothing_else(targets: str):
    context = run_context({"cron": "0 2 * * *", "timezone": "UTC"}, utc(2026, 11, 7, 2))
    assert load_target(f"{targets}:dated", {"n": 5}, context)._bound_args == (5, 7)
    assert load_target(f"{targets}:windowed", {}, context)._bound_args == (6, 7)
    # **params receive the params only; a target naming neither is called as before.
    assert load_target(f"{targets}:open_kwargs", {"n": 1}, context)._bound_args == (1, 0)
    assert load_target(f"{targets}:nightly", {"n": 5}, context)._bound_args == (5, 2)
    with pytest.raises(TargetError, match=(
            rf"schedule target '{targets}:nightly': params \['data_interval', 'logical_time'\] "
            r"are set by the scheduler for each run")):
        load_target(f"{targets}:nightly", {"logical_time": 1, "data_interval": 2}, context)


@pytest.mark.parametrize(("cron", "tz", "logical", "start"), [
    # The interval runs from the fire time before: a day, a week, across a DST change.
    ("0 2 * * *", "UTC", utc(2026, 11, 7, 2), utc(2026, 11, 6, 2)),
    ("0 6 * * 1", "UTC", utc(2026, 11, 9, 6), utc(2026, 11, 2, 6)),
    ("30 2 * * *", NY, utc(2026, 3, 9, 6, 30), utc(2026, 3, 8, 7)),    # 02:30 is in the gap
    ("0 * * * *", NY, utc(2026, 11, 1, 6), utc(2026, 11, 1, 5)),      # 01:00 EST after EDT's
    # A logical time off the schedule (a trigger): from the last fire time before it.
    ("0 2 * * *", "UTC", utc(2026, 11, 7, 14, 37), utc(2026, 11, 7, 2)),
])
def test_run_context_is_the_logical_time_and_the_interval_since_the_fire_before(
        cron: str, tz: str, logical: datetime, start: datetime):
    context = run_context({"cron": cron, "timezone": tz}, logical)
    assert context["logical_time"] == logical
    assert context["data_interval"] == (start, logical)
    # At the schedule's local offset: .date() is the schedule's local day.
    for t in (context["logical_time"], *context["data_interval"]):
        assert t.utcoffset() == t.astimezone(ZoneInfo(tz)).utcoffset()
