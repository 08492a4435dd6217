"""WorkflowStorage against real SQLite files, real checkpoint files and real processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sluice.exceptions import SerializationError
from sluice.libs.workflow.status import StepStatus, WorkflowStatus
from sluice.libs.workflow.storage import (
    SCHEMA_VERSION,
    STORAGE_ENV,
    ScheduleNotFoundError,
    StorageError,
    WorkflowExistsError,
    WorkflowNotFoundError,
    WorkflowStorage,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def run_python(code: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout of sluice."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if kwargs.pop("background", False):
        return subprocess.Popen([sys.executable, "-c", code], env=env, text=True, **kwargs)
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def storage(tmp_path: Path) -> WorkflowStorage:
    return WorkflowStorage(tmp_path / "wf")


class Point:
    """A plain picklable user type (module level, so a fresh process can import it)."""

    def __init__(self, x: int):
        self.x = x


# ------------------------------------------------------------------- database


def test_new_database_is_wal_with_schema_version(storage: WorkflowStorage) -> None:
    conn = sqlite3.connect(storage.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"runs", "steps", "schedules", "schedule_runs"}
    conn.close()
    assert WorkflowStorage(storage.folder).list_runs() == []  # reopening an existing one works


def test_default_folder_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(STORAGE_ENV, str(tmp_path / "from-env"))
    assert WorkflowStorage().folder == tmp_path / "from-env"
    assert (tmp_path / "from-env" / "workflows.db").is_file()


def test_pickles_as_its_folder(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.folder == storage.folder and copy.status("r") is WorkflowStatus.RUNNING


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (workflow_id TEXT PRIMARY KEY, future_column BLOB)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StorageError, match=r"written by a newer sluice \(schema 2 > 1\); upgrade"):
        WorkflowStorage(tmp_path)
    assert db.read_bytes() == before


def test_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "workflows.db"
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    before = db.read_bytes()
    with pytest.raises(
        StorageError, match=r"workflows.db' is corrupt or not a database .*untouched"
    ):
        WorkflowStorage(tmp_path)
    assert db.read_bytes() == before


def test_damaged_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    storage = WorkflowStorage(tmp_path)
    for index in range(40):
        storage.create_run(f"run-{index}", os.urandom(3000))
    storage.close()  # the last connection closing folds the WAL into the file
    db = tmp_path / "workflows.db"
    data = bytearray(db.read_bytes())
    data[2 * 4096 : 3 * 4096] = bytes(range(256)) * 16  # page 3: a table's b-tree page
    db.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"is corrupt or not a database \(.*Page 3"):
        WorkflowStorage(tmp_path)
    assert db.read_bytes() == data


def test_someone_elses_sqlite_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "workflows.db")
    conn.execute("CREATE TABLE recipes (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="an SQLite database that sluice did not write"):
        WorkflowStorage(tmp_path)


# ----------------------------------------------------------------------- runs


def test_run_lifecycle(storage: WorkflowStorage) -> None:
    storage.create_run("r1", b"dag-1", output_step="out")
    with pytest.raises(
        WorkflowExistsError, match=rf"'r1' is already RUNNING \(driver pid {os.getpid()} "
    ):
        storage.create_run("r1", b"again")
    with pytest.raises(WorkflowExistsError, match="'r1' is already RUNNING"):
        storage.claim_run("r1")
    with pytest.raises(WorkflowExistsError, match="cancel it and let it stop before deleting it"):
        storage.delete_run("r1")
    storage.set_status("r1", WorkflowStatus.FAILED, error="ValueError: boom")
    run = storage.get_run("r1")
    assert run["status"] is WorkflowStatus.FAILED and run["error"] == "ValueError: boom"
    assert (
        run["dag"] == b"dag-1" and run["output_step"] == "out" and run["driver_pid"] == os.getpid()
    )
    with pytest.raises(
        WorkflowExistsError, match=r"exists with status FAILED; resume\('r1'\) or delete"
    ):
        storage.create_run("r1", b"again")
    assert storage.claim_run("r1") == b"dag-1"
    assert storage.status("r1") is WorkflowStatus.RUNNING and storage.get_run("r1")["error"] is None

    storage.create_run("r2", b"dag-2")
    assert storage.list_runs() == [("r1", WorkflowStatus.RUNNING), ("r2", WorkflowStatus.RUNNING)]
    storage.set_status("r2", "SUCCESSFUL")
    assert storage.list_runs(WorkflowStatus.SUCCESSFUL) == [("r2", WorkflowStatus.SUCCESSFUL)]
    assert storage.list_runs("CANCELED") == []


def test_set_status_with_expected_does_not_overwrite_a_cancel(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    storage.set_status("r", WorkflowStatus.CANCELED)
    assert not storage.set_status("r", WorkflowStatus.SUCCESSFUL, expected=WorkflowStatus.RUNNING)
    assert storage.status("r") is WorkflowStatus.CANCELED


def test_unknown_ids_are_named(storage: WorkflowStorage) -> None:
    assert storage.get_run("nope") is None
    for call in (storage.status, storage.claim_run, storage.delete_run):
        with pytest.raises(WorkflowNotFoundError, match="no workflow 'nope' in this storage"):
            call("nope")
    with pytest.raises(WorkflowNotFoundError, match="no workflow 'nope'"):
        storage.step_started("nope", "s", "s")
    with pytest.raises(WorkflowNotFoundError, match="no workflow 'nope'"):
        storage.step_succeeded("nope", "s", 1, 0.1)
    assert not (storage.folder / "checkpoints").exists()
    with pytest.raises(ValueError, match="workflow_id must be a non-empty string, got ''"):
        storage.create_run("", b"dag")


def test_delete_run_removes_rows_and_checkpoints(storage: WorkflowStorage) -> None:
    storage.create_run("a/b:c", b"dag")  # an id that is no file name
    storage.step_succeeded("a/b:c", "s", [1, 2], 0.5)
    storage.set_status("a/b:c", WorkflowStatus.SUCCESSFUL)
    assert len(list((storage.folder / "checkpoints").rglob("*.ckpt"))) == 1
    storage.delete_run("a/b:c")
    assert storage.get_run("a/b:c") is None and storage.steps("a/b:c") == []
    assert list((storage.folder / "checkpoints").rglob("*")) == []


# ---------------------------------------------------------------------- steps


def test_step_attempts_and_failures(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    assert storage.step_started("r", "s1", "load") == 1
    storage.step_failed("r", "s1", "OSError: disk", 0.25)
    assert storage.step_started("r", "s1", "load") == 2
    storage.step_succeeded("r", "s1", {"rows": 3}, 0.5, cache_key="k1")
    assert storage.step_started("r", "s2", "train") == 1
    first, second = storage.steps("r")
    assert (first["step_id"], first["name"], first["status"], first["attempts"]) == (
        "s1",
        "load",
        StepStatus.SUCCESSFUL,
        2,
    )
    assert first["error"] is None and first["duration"] == 0.5 and first["cache_key"] == "k1"
    assert (second["step_id"], second["status"], second["finished"]) == (
        "s2",
        StepStatus.RUNNING,
        None,
    )
    assert storage.has_checkpoint("r", "s1") and not storage.has_checkpoint("r", "s2")
    with pytest.raises(StorageError, match="step 's2' of workflow 'r' has no checkpoint"):
        storage.load_checkpoint("r", "s2")


def test_checkpoints_round_trip_arrays_tables_and_objects(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    array = np.arange(100_000, dtype=np.float64)
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    storage.step_succeeded("r", "array", array, 0.1)
    storage.step_succeeded("r", "table", table, 0.1)
    storage.step_succeeded("r", "point", Point(7), 0.1)
    loaded = storage.load_checkpoint("r", "array")
    np.testing.assert_array_equal(loaded, array)
    loaded[0] = -1.0  # a checkpoint comes back writable, like the value that was stored
    assert storage.load_checkpoint("r", "table").equals(table)
    assert storage.load_checkpoint("r", "point").x == 7
    # In a fresh process too (the engine resumes in another one).
    result = run_python(
        "from sluice.libs.workflow.storage import WorkflowStorage\n"
        f"s = WorkflowStorage({str(storage.folder)!r})\n"
        "print(s.load_checkpoint('r', 'array').sum(), s.load_checkpoint('r', 'table').num_rows)"
    )
    assert result.stdout.split() == [str(array.sum()), "3"], result.stderr


def test_unserializable_value_leaves_no_checkpoint(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    storage.step_started("r", "s", "s")
    with pytest.raises(SerializationError, match="cannot serialize"):
        storage.step_succeeded("r", "s", threading.Lock(), 0.1)
    assert storage.steps("r")[0]["status"] is StepStatus.RUNNING
    assert not storage.has_checkpoint("r", "s")
    assert [p for p in (storage.folder / "checkpoints").rglob("*") if p.is_file()] == []


def test_checkpoint_file_deleted_by_hand_is_reported(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    storage.step_succeeded("r", "s", 1, 0.1)
    (storage.folder / storage.steps("r")[0]["checkpoint"]).unlink()
    assert not storage.has_checkpoint("r", "s")
    with pytest.raises(
        StorageError, match="checkpoint file .* of step 's' of workflow 'r' is missing"
    ):
        storage.load_checkpoint("r", "s")


def test_crash_while_writing_a_checkpoint_leaves_none(storage: WorkflowStorage) -> None:
    pytest.importorskip("resource")  # the child sets the limit; skip where there is none
    # The child caps its file size at 1 MiB and lets SIGXFSZ kill it (Python ignores it
    # by default): it dies in the middle of writing a 4 MiB checkpoint.
    result = run_python(
        "import resource, signal\n"
        "import numpy as np\n"
        "from sluice.libs.workflow.storage import WorkflowStorage\n"
        f"s = WorkflowStorage({str(storage.folder)!r})\n"
        "s.create_run('crash', b'dag')\n"
        "s.step_started('crash', 'big', 'big')\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "s.step_succeeded('crash', 'big', np.ones(4 << 20, dtype=np.uint8), 0.0)\n"
        "print('survived')\n"
    )
    assert result.returncode == -signal.SIGXFSZ, result.stderr
    leftovers = [p for p in (storage.folder / "checkpoints").rglob("*") if p.is_file()]
    assert [p.name.endswith(".tmp") for p in leftovers] == [True]
    assert leftovers[0].stat().st_size == 1 << 20  # really cut off midway
    assert not storage.has_checkpoint("crash", "big")
    assert storage.steps("crash")[0]["status"] is StepStatus.RUNNING
    assert storage.status("crash") is WorkflowStatus.RESUMABLE

    storage.claim_run("crash")  # resuming removes the orphan and re-runs the step
    assert not leftovers[0].exists()
    assert storage.steps("crash")[0]["status"] is StepStatus.PENDING
    assert storage.step_started("crash", "big", "big") == 2
    storage.step_succeeded("crash", "big", np.ones(4 << 20, dtype=np.uint8), 0.0)
    assert storage.load_checkpoint("crash", "big").sum() == 4 << 20


# ---------------------------------------------------------------- dead drivers


def test_a_fire_whose_run_lost_its_driver_reads_resumable(storage: WorkflowStorage) -> None:
    storage.add_schedule("nightly", "m:f", "0 2 * * *", "UTC", None, False, 1)
    result = run_python(
        "from sluice.libs.workflow.storage import WorkflowStorage\n"
        f"s = WorkflowStorage({str(storage.folder)!r})\n"
        "s.create_run('nightly@t1', b'dag', schedule_name='nightly', logical_time='t1')\n"
        "s.record_fire('nightly', 't1', 'nightly@t1', 'RUNNING')\n"
    )
    assert result.returncode == 0, result.stderr
    storage.create_run("nightly@t2", b"dag", schedule_name="nightly", logical_time="t2")
    storage.record_fire("nightly", "t2", "nightly@t2", "RUNNING")
    assert [f["outcome"] for f in storage.fires("nightly")] == ["RESUMABLE", "RUNNING"]


def test_run_whose_driver_exited_is_resumable(storage: WorkflowStorage) -> None:
    result = run_python(
        "from sluice.libs.workflow.storage import WorkflowStorage\n"
        f"s = WorkflowStorage({str(storage.folder)!r})\n"
        "s.create_run('orphan', b'the dag')\n"
        "s.step_succeeded('orphan', 'first', 1, 0.1)\n"
        "s.step_started('orphan', 'second', 'second')\n"
    )
    assert result.returncode == 0, result.stderr
    assert storage.status("orphan") is WorkflowStatus.RESUMABLE
    assert storage.get_run("orphan")["status"] is WorkflowStatus.RESUMABLE
    assert storage.list_runs(WorkflowStatus.RESUMABLE) == [("orphan", WorkflowStatus.RESUMABLE)]
    with pytest.raises(WorkflowExistsError, match="'orphan' exists with status RESUMABLE; resume"):
        storage.create_run("orphan", b"other")
    assert storage.claim_run("orphan") == b"the dag"
    assert storage.status("orphan") is WorkflowStatus.RUNNING
    assert storage.get_run("orphan")["driver_pid"] == os.getpid()
    assert [s["status"] for s in storage.steps("orphan")] == [
        StepStatus.SUCCESSFUL,
        StepStatus.PENDING,
    ]
    assert storage.load_checkpoint("orphan", "first") == 1


def test_run_of_a_live_driver_is_running_until_it_dies(storage: WorkflowStorage) -> None:
    storage.add_schedule("hourly", "m:f", "0 * * * *", "UTC", None, False, 1)
    driver = run_python(
        "import sys\n"
        "from sluice.libs.workflow.storage import WorkflowStorage\n"
        f"s = WorkflowStorage({str(storage.folder)!r})\n"
        "s.create_run('live', b'dag', schedule_name='hourly', logical_time='2026-01-01T00:00')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n",
        background=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert driver.stdout.readline().strip() == "ready"
        assert storage.status("live") is WorkflowStatus.RUNNING
        assert storage.active_runs("hourly") == 1
        with pytest.raises(
            WorkflowExistsError, match=rf"already RUNNING \(driver pid {driver.pid} "
        ):
            storage.claim_run("live")
    finally:
        driver.kill()
        driver.wait(timeout=30)
    assert storage.status("live") is WorkflowStatus.RESUMABLE
    assert storage.active_runs("hourly") == 0


# ---------------------------------------------------------------------- cache


def test_cache_is_shared_across_runs_and_instances(storage: WorkflowStorage) -> None:
    assert storage.cache_lookup("key") == (False, None)
    storage.cache_store("key", np.arange(5))
    storage.cache_store("none", None)
    found, value = WorkflowStorage(storage.folder).cache_lookup("key")
    assert found and value.tolist() == [0, 1, 2, 3, 4]
    assert storage.cache_lookup("none") == (True, None)
    entry = next((storage.folder / "cache").glob("*.ckpt"))
    entry.write_bytes(b"not a sluice layout")  # unreadable entries are misses, not errors
    assert sum(storage.cache_lookup(key)[0] for key in ("key", "none")) == 1


# ------------------------------------------------------------------ schedules


def test_schedules_and_fires(storage: WorkflowStorage) -> None:
    storage.add_schedule(
        "nightly", "jobs:build", "30 2 * * *", "America/New_York", {"day": "mon", "n": 3}, True, 2
    )
    with pytest.raises(StorageError, match="schedule 'nightly' already exists"):
        storage.add_schedule("nightly", "jobs:other", "* * * * *", "UTC", None, False, 1)
    with pytest.raises(StorageError, match="params of schedule 'bad' cannot be stored"):
        storage.add_schedule("bad", "jobs:build", "* * * * *", "UTC", {"when": object()}, False, 1)
    with pytest.raises(ValueError, match="max_active_runs=0 for schedule 'zero'"):
        storage.add_schedule("zero", "jobs:build", "* * * * *", "UTC", None, False, 0)
    schedule = storage.get_schedule("nightly")
    assert schedule["params"] == {"day": "mon", "n": 3} and schedule["catchup"] is True
    assert schedule["paused"] is False and schedule["last_logical_time"] is None
    assert schedule["timezone"] == "America/New_York" and schedule["max_active_runs"] == 2
    storage.set_paused("nightly", True)
    storage.set_last_logical_time("nightly", "2026-03-08T07:30:00+00:00")
    schedule = storage.get_schedule("nightly")
    assert (
        schedule["paused"] is True and schedule["last_logical_time"] == "2026-03-08T07:30:00+00:00"
    )

    t1, t2 = "2026-03-08T07:30:00+00:00", "2026-03-09T06:30:00+00:00"
    assert storage.record_fire("nightly", t1, "nightly@1", "RUNNING")
    assert not storage.record_fire("nightly", t1, "nightly@1", "RUNNING")  # never twice
    assert storage.record_fire("nightly", t2, None, "SKIPPED_OVERLAP")
    storage.create_run("nightly@1", b"dag", schedule_name="nightly", logical_time=t1)
    storage.set_status("nightly@1", WorkflowStatus.SUCCESSFUL)  # the fire follows its run
    assert [(f["logical_time"], f["outcome"]) for f in storage.fires("nightly")] == [
        (t1, "SUCCESSFUL"),
        (t2, "SKIPPED_OVERLAP"),
    ]
    storage.set_fire_outcome("nightly", t2, "SKIPPED_MISSED")
    assert storage.fires("nightly")[1]["outcome"] == "SKIPPED_MISSED"
    assert storage.active_runs("nightly") == 0
    assert [s["name"] for s in storage.list_schedules()] == ["nightly"]

    storage.remove_schedule("nightly")
    assert storage.get_schedule("nightly") is None and storage.fires("nightly") == []
    assert storage.get_run("nightly@1")["schedule_name"] == "nightly"  # its runs stay
    for call in (
        lambda: storage.set_paused("nightly", False),
        lambda: storage.remove_schedule("nightly"),
        lambda: storage.record_fire("nightly", t1, None, "RUNNING"),
    ):
        with pytest.raises(ScheduleNotFoundError, match="no schedule 'nightly' in this storage"):
            call()


# ----------------------------------------------------------------- concurrency

WORKERS = 4
ROUNDS = 20


def _hammer(folder: str, index: int, barrier, results) -> None:
    """One writer process: create shared rows racing the others, then update them in a loop."""
    try:
        barrier.wait()  # all open the fresh folder (and create the schema) at once
        storage = WorkflowStorage(folder)
        created = []
        for name, create in (
            ("run", lambda: storage.create_run("shared", b"dag")),
            (
                "schedule",
                lambda: storage.add_schedule("every", "m:f", "* * * * *", "UTC", None, False, 1),
            ),
        ):
            try:
                create()
                created.append(name)
            except StorageError:
                pass
        storage.create_run(f"own-{index}", b"dag")
        barrier.wait()
        for step in range(ROUNDS):
            storage.step_started("shared", "counter", "counter")
            storage.step_succeeded(f"own-{index}", f"s{step}", (index, step), 0.0)
            storage.record_fire("every", f"{index}-{step:03d}", f"own-{index}", "RUNNING")
            storage.set_last_logical_time("every", f"{index}-{step:03d}")
        results.put((index, created, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put((index, [], f"{type(exc).__name__}: {exc}"))


def test_concurrent_writer_processes_lose_no_updates(tmp_path: Path) -> None:
    folder = str(tmp_path / "shared")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    workers = [
        context.Process(target=_hammer, args=(folder, i, barrier, results)) for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [error for _, _, error in outcomes] == [None] * WORKERS
    created = sorted(name for _, names, _ in outcomes for name in names)
    assert created == ["run", "schedule"]  # each shared row was created exactly once

    storage = WorkflowStorage(folder)
    assert storage.steps("shared")[0]["attempts"] == WORKERS * ROUNDS
    for index in range(WORKERS):
        steps = storage.steps(f"own-{index}")
        assert len(steps) == ROUNDS and {s["status"] for s in steps} == {StepStatus.SUCCESSFUL}
        assert storage.load_checkpoint(f"own-{index}", f"s{ROUNDS - 1}") == (index, ROUNDS - 1)
    assert len(storage.fires("every")) == WORKERS * ROUNDS
    assert storage.list_runs(WorkflowStatus.RESUMABLE)  # the workers have exited


def test_threads_share_one_storage(storage: WorkflowStorage) -> None:
    storage.create_run("r", b"dag")
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(25):
                storage.step_started("r", "counter", "counter")
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and storage.steps("r")[0]["attempts"] == 100
