"""Durable metadata and checkpoints of workflow runs and schedules.

A storage folder holds::

    workflows.db                          SQLite (WAL): runs, steps, schedules, schedule_runs
    checkpoints/{run}/{step}.ckpt         one step's output, in sluice's serialized layout
    cache/{sha256 of the key}.ckpt        cross-run cache entries

``{run}`` and ``{step}`` are the ids made filesystem-safe plus a hash of the id, so
any id maps to one file. Every file is written atomically (a temporary file in the
same folder, fsync, ``os.replace``), and a step is marked SUCCESSFUL only after its
file is in place: a SUCCESSFUL step always has its checkpoint, and a crash midway
leaves at most an orphan ``*.tmp`` file (ignored, and removed when the run is claimed
again) or an unreferenced checkpoint (overwritten when the step runs again).

Several threads and processes may share one folder: each thread of each process
opens its own connection, every read-modify-write runs in ``BEGIN IMMEDIATE``, and
a writer waits up to :data:`BUSY_TIMEOUT_S` for another's transaction to end.

>>> import tempfile
>>> storage = WorkflowStorage(tempfile.mkdtemp())
>>> storage.create_run("demo", b"dag")
>>> storage.step_succeeded("demo", "double", 42, duration=0.1)
>>> storage.load_checkpoint("demo", "double")
42
>>> storage.status("demo")
<WorkflowStatus.RUNNING: 'RUNNING'>
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from sluice.exceptions import SerializationError
from sluice.libs.workflow.checkpoints import (
    read_bytes,
    safe_name,
    write_atomically,
)
from sluice.libs.workflow.database import (
    BUSY_TIMEOUT_S,
    SCHEMA_VERSION,
    STORAGE_ENV,
    Database,
    ScheduleNotFoundError,
    StorageError,
    StorageNotFoundError,
    WorkflowExistsError,
    WorkflowNotFoundError,
    default_folder,
)
from sluice.libs.workflow.drivers import driver_alive, this_driver
from sluice.libs.workflow.status import StepStatus, WorkflowStatus
from sluice.store import serialization

__all__ = [
    "BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "STORAGE_ENV",
    "ScheduleNotFoundError",
    "StorageError",
    "StorageNotFoundError",
    "WorkflowExistsError",
    "WorkflowNotFoundError",
    "WorkflowStorage",
    "default_folder",
]

_RUN_COLUMNS = (
    "workflow_id, status, created, updated, driver_pid, driver_host, driver_start, dag, "
    "output_step, error, schedule_name, logical_time"
)
_STEP_COLUMNS = (
    "step_id, name, status, attempts, started, finished, duration, error, checkpoint, cache_key"
)
_SCHEDULE_COLUMNS = (
    "name, target, cron, timezone, params, catchup, max_active_runs, paused, created, "
    "last_logical_time"
)


class WorkflowStorage(Database):
    """Runs, steps, checkpoints and schedules kept in one folder, safe for many processes.

    ``folder`` defaults to :func:`default_folder` and is created if missing (with
    ``create=False``, a folder without a database raises :class:`StorageNotFoundError`
    instead); a database written by a newer sluice, not sluice's, or corrupt raises
    :class:`StorageError` and is left untouched. Instances pickle as their folder, so they can be handed to other
    processes.
    """

    def __repr__(self) -> str:
        return f"WorkflowStorage({str(self.folder)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkflowStorage, (str(self.folder),))

    # ----------------------------------------------------------------------- runs

    def create_run(
        self,
        workflow_id: str,
        dag: bytes,
        *,
        schedule_name: str | None = None,
        logical_time: str | None = None,
        output_step: str | None = None,
    ) -> None:
        """Record a new run, RUNNING with this process as its driver.

        Raises :class:`WorkflowExistsError` if the id is taken, whatever its status:
        a finished or interrupted run is continued with :meth:`claim_run` or removed
        with :meth:`delete_run` first.
        """
        _check_id("workflow_id", workflow_id)
        now = time.time()
        host, pid, start = this_driver()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status, driver_host, driver_pid, driver_start FROM runs "
                "WHERE workflow_id = ?",
                (workflow_id,),
            ).fetchone()
            if row is not None:
                raise _exists_error(workflow_id, row)
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    workflow_id,
                    WorkflowStatus.RUNNING.value,
                    now,
                    now,
                    pid,
                    host,
                    start,
                    bytes(dag),
                    output_step,
                    schedule_name,
                    logical_time,
                ),
            )

    def claim_run(self, workflow_id: str) -> bytes:
        """Make this process the driver of an existing run (to resume it); return its DAG bytes.

        The run becomes RUNNING, its error is cleared, steps left RUNNING by a dead
        driver go back to PENDING, and orphan temporary checkpoint files are removed.
        Raises :class:`WorkflowNotFoundError` for an unknown id and
        :class:`WorkflowExistsError` if a live driver is running it.
        """
        host, pid, start = this_driver()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status, driver_host, driver_pid, driver_start, dag FROM runs "
                "WHERE workflow_id = ?",
                (workflow_id,),
            ).fetchone()
            if row is None:
                raise _not_found(workflow_id)
            if _run_status(*row[:4]) is WorkflowStatus.RUNNING:
                raise _exists_error(workflow_id, row[:4])
            conn.execute(
                "UPDATE runs SET status = ?, updated = ?, driver_host = ?, driver_pid = ?, "
                "driver_start = ?, error = NULL WHERE workflow_id = ?",
                (WorkflowStatus.RUNNING.value, time.time(), host, pid, start, workflow_id),
            )
            conn.execute(
                "UPDATE steps SET status = ? WHERE workflow_id = ? AND status = ?",
                (StepStatus.PENDING.value, workflow_id, StepStatus.RUNNING.value),
            )
        for orphan in self._run_dir(workflow_id).glob(".*.tmp"):
            with contextlib.suppress(OSError):
                orphan.unlink()
        return bytes(row[4])

    def set_status(
        self,
        workflow_id: str,
        status: WorkflowStatus | str,
        error: str | None = None,
        *,
        expected: WorkflowStatus | str | None = None,
    ) -> bool:
        """Set a run's status and error; the fire that started it (if any) gets the same outcome.

        With ``expected``, the change happens only if the stored status is that one
        (so a driver finishing does not overwrite a concurrent cancel); returns
        whether the status changed. Setting RUNNING makes this process the driver.
        """
        status = WorkflowStatus(status)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status FROM runs WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()
            if row is None:
                raise _not_found(workflow_id)
            if expected is not None and row[0] != WorkflowStatus(expected).value:
                return False
            conn.execute(
                "UPDATE runs SET status = ?, error = ?, updated = ? WHERE workflow_id = ?",
                (status.value, error, time.time(), workflow_id),
            )
            if status is WorkflowStatus.RUNNING:
                host, pid, start = this_driver()
                conn.execute(
                    "UPDATE runs SET driver_host = ?, driver_pid = ?, driver_start = ? "
                    "WHERE workflow_id = ?",
                    (host, pid, start, workflow_id),
                )
            conn.execute(
                "UPDATE schedule_runs SET outcome = ? WHERE workflow_id = ? "
                "AND outcome NOT LIKE 'SKIPPED%'",
                (status.value, workflow_id),
            )
        return True

    def get_run(self, workflow_id: str) -> dict[str, Any] | None:
        """A run's row as a dict (``status`` as :meth:`status` reports it), or None."""
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE workflow_id = ?", (workflow_id,))
        if not rows:
            return None
        run = dict(zip(_RUN_COLUMNS.split(", "), rows[0]))
        run["status"] = _run_status(
            run["status"], run["driver_host"], run["driver_pid"], run.pop("driver_start")
        )
        run["dag"] = bytes(run["dag"])
        return run

    def status(self, workflow_id: str) -> WorkflowStatus:
        """A run's status; a RUNNING run whose driver process is gone reads RESUMABLE.

        A driver on another host is taken to be alive (its pid cannot be checked here).
        """
        rows = self._query(
            "SELECT status, driver_host, driver_pid, driver_start FROM runs WHERE workflow_id = ?",
            (workflow_id,),
        )
        if not rows:
            raise _not_found(workflow_id)
        return _run_status(*rows[0])

    def list_runs(
        self, status_filter: WorkflowStatus | str | None = None
    ) -> list[tuple[str, WorkflowStatus]]:
        """Every run's id and status (as :meth:`status` reports it), oldest first."""
        wanted = WorkflowStatus(status_filter) if status_filter is not None else None
        rows = self._query(
            "SELECT workflow_id, status, driver_host, driver_pid, driver_start FROM runs "
            "ORDER BY created, workflow_id"
        )
        runs = [(row[0], _run_status(*row[1:])) for row in rows]
        return [run for run in runs if wanted is None or run[1] is wanted]

    def delete_run(self, workflow_id: str) -> None:
        """Remove a run, its steps and its checkpoint files.

        Refuses (:class:`WorkflowExistsError`) a run that a live driver is running.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status, driver_host, driver_pid, driver_start FROM runs "
                "WHERE workflow_id = ?",
                (workflow_id,),
            ).fetchone()
            if row is None:
                raise _not_found(workflow_id)
            if _run_status(*row) is WorkflowStatus.RUNNING:
                raise WorkflowExistsError(
                    f"workflow {workflow_id!r} is RUNNING (driver pid {row[2]} on {row[1]}); "
                    f"cancel it and let it stop before deleting it"
                )
            conn.execute("DELETE FROM steps WHERE workflow_id = ?", (workflow_id,))
            conn.execute("DELETE FROM runs WHERE workflow_id = ?", (workflow_id,))
        shutil.rmtree(self._run_dir(workflow_id), ignore_errors=True)

    # ---------------------------------------------------------------------- steps

    def step_started(self, workflow_id: str, step_id: str, name: str) -> int:
        """Mark a step RUNNING now; return its attempt number (1 the first time)."""
        _check_id("step_id", step_id)
        with self._transaction() as conn:
            _require_run(conn, workflow_id)
            conn.execute(
                "INSERT INTO steps (workflow_id, step_id, name, status, attempts, started) "
                "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (workflow_id, step_id) DO UPDATE SET "
                "name = excluded.name, status = excluded.status, attempts = attempts + 1, "
                "started = excluded.started, finished = NULL, duration = NULL, error = NULL, "
                "checkpoint = NULL",
                (workflow_id, step_id, name, StepStatus.RUNNING.value, time.time()),
            )
            return int(
                conn.execute(
                    "SELECT attempts FROM steps WHERE workflow_id = ? AND step_id = ?",
                    (workflow_id, step_id),
                ).fetchone()[0]
            )

    def step_succeeded(
        self,
        workflow_id: str,
        step_id: str,
        value: Any,
        duration: float,
        cache_key: str | None = None,
    ) -> None:
        """Checkpoint a step's output (atomically), then mark the step SUCCESSFUL.

        ``value`` is anything :mod:`sluice.store.serialization` handles (numpy arrays,
        Arrow tables, picklable objects).
        """
        _check_id("step_id", step_id)
        if not self._query("SELECT 1 FROM runs WHERE workflow_id = ?", (workflow_id,)):
            raise _not_found(workflow_id)  # before writing a file nothing would refer to
        relative = self._checkpoint_relpath(workflow_id, step_id)
        write_atomically(self.folder / relative, value)
        now = time.time()
        with self._transaction() as conn:
            _require_run(conn, workflow_id)
            conn.execute(
                "INSERT INTO steps (workflow_id, step_id, name, status, attempts, started, "
                "finished, duration, checkpoint, cache_key) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?) "
                "ON CONFLICT (workflow_id, step_id) DO UPDATE SET status = excluded.status, "
                "finished = excluded.finished, duration = excluded.duration, error = NULL, "
                "checkpoint = excluded.checkpoint, cache_key = excluded.cache_key",
                (
                    workflow_id,
                    step_id,
                    step_id,
                    StepStatus.SUCCESSFUL.value,
                    now - duration,
                    now,
                    duration,
                    relative,
                    cache_key,
                ),
            )

    def step_failed(self, workflow_id: str, step_id: str, error: str, duration: float) -> None:
        """Mark a step FAILED with its error text (its last attempt's)."""
        _check_id("step_id", step_id)
        now = time.time()
        with self._transaction() as conn:
            _require_run(conn, workflow_id)
            conn.execute(
                "INSERT INTO steps (workflow_id, step_id, name, status, attempts, started, "
                "finished, duration, error) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) "
                "ON CONFLICT (workflow_id, step_id) DO UPDATE SET status = excluded.status, "
                "finished = excluded.finished, duration = excluded.duration, "
                "error = excluded.error, checkpoint = NULL",
                (
                    workflow_id,
                    step_id,
                    step_id,
                    StepStatus.FAILED.value,
                    now - duration,
                    now,
                    duration,
                    error,
                ),
            )

    def steps(self, workflow_id: str) -> list[dict[str, Any]]:
        """A run's steps as dicts (``status`` a :class:`StepStatus`), in the order they started."""
        rows = self._query(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE workflow_id = ? "
            "ORDER BY started IS NULL, started, step_id",
            (workflow_id,),
        )
        names = _STEP_COLUMNS.split(", ")
        steps = [dict(zip(names, row)) for row in rows]
        for step in steps:
            step["status"] = StepStatus(step["status"])
        return steps

    def has_checkpoint(self, workflow_id: str, step_id: str) -> bool:
        """Whether the step is SUCCESSFUL and its checkpoint file is in place."""
        relative = self._checkpoint_of(workflow_id, step_id)
        return relative is not None and (self.folder / relative).is_file()

    def load_checkpoint(self, workflow_id: str, step_id: str) -> Any:
        """The output a SUCCESSFUL step checkpointed (a fresh, writable copy)."""
        relative = self._checkpoint_of(workflow_id, step_id)
        if relative is None:
            raise StorageError(
                f"step {step_id!r} of workflow {workflow_id!r} has no checkpoint (it has not "
                f"succeeded); run or resume the workflow to compute it"
            )
        try:
            return serialization.loads(read_bytes(self.folder / relative))
        except FileNotFoundError:
            raise StorageError(
                f"the checkpoint file {str(self.folder / relative)!r} of step {step_id!r} of "
                f"workflow {workflow_id!r} is missing (was it deleted by hand?); delete the "
                f"workflow and run it again"
            ) from None

    def _checkpoint_of(self, workflow_id: str, step_id: str) -> str | None:
        rows = self._query(
            "SELECT checkpoint FROM steps WHERE workflow_id = ? AND step_id = ? AND status = ?",
            (workflow_id, step_id, StepStatus.SUCCESSFUL.value),
        )
        return rows[0][0] if rows else None

    def _run_dir(self, workflow_id: str) -> Path:
        return self.folder / "checkpoints" / safe_name(workflow_id)

    def _checkpoint_relpath(self, workflow_id: str, step_id: str) -> str:
        return f"checkpoints/{safe_name(workflow_id)}/{safe_name(step_id)}.ckpt"

    # ---------------------------------------------------------------------- cache

    def cache_lookup(self, cache_key: str) -> tuple[bool, Any]:
        """``(True, value)`` if a value was stored under ``cache_key``, else ``(False, None)``.

        An entry that cannot be read back (written by another sluice version, or
        naming a type that no longer imports) counts as a miss.
        """
        try:
            return True, serialization.loads(read_bytes(self._cache_path(cache_key)))
        except (FileNotFoundError, SerializationError):
            return False, None

    def cache_store(self, cache_key: str, value: Any) -> None:
        """Store ``value`` under ``cache_key`` for any later run (atomically; last write wins)."""
        write_atomically(self._cache_path(cache_key), value)

    def _cache_path(self, cache_key: str) -> Path:
        _check_id("cache_key", cache_key)
        return self.folder / "cache" / f"{hashlib.sha256(cache_key.encode()).hexdigest()}.ckpt"

    # ------------------------------------------------------------------ schedules

    def add_schedule(
        self,
        name: str,
        target: str,
        cron: str,
        timezone: str,
        params: dict[str, Any] | None,
        catchup: bool,
        max_active_runs: int,
    ) -> None:
        """Record a schedule (the caller validated it); a taken name raises StorageError."""
        _check_id("schedule name", name)
        if not isinstance(max_active_runs, int) or max_active_runs < 1:
            raise ValueError(
                f"max_active_runs={max_active_runs!r} for schedule {name!r}; it must be an int >= 1"
            )
        try:
            params_json = json.dumps(params or {}, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise StorageError(
                f"params of schedule {name!r} cannot be stored ({exc}); pass a dict of "
                f"JSON-serializable values (str, int, float, bool, None, lists and dicts of them)"
            ) from exc
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone():
                raise StorageError(
                    f"schedule {name!r} already exists; remove it first or pick another name"
                )
            conn.execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL)",
                (
                    name,
                    target,
                    cron,
                    timezone,
                    params_json,
                    int(bool(catchup)),
                    max_active_runs,
                    time.time(),
                ),
            )

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        """A schedule as a dict (``params`` decoded, flags as bools), or None."""
        rows = self._query(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE name = ?", (name,))
        return _schedule_dict(rows[0]) if rows else None

    def list_schedules(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        rows = self._query(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules ORDER BY name")
        return [_schedule_dict(row) for row in rows]

    def set_paused(self, name: str, paused: bool) -> None:
        """Pause (no fires) or unpause a schedule."""
        self._update_schedule(name, "paused = ?", int(bool(paused)))

    def set_last_logical_time(self, name: str, logical_time: str) -> None:
        """Record the last logical time a schedule fired (or skipped)."""
        self._update_schedule(name, "last_logical_time = ?", logical_time)

    def remove_schedule(self, name: str) -> None:
        """Remove a schedule and its fire records (the runs it started stay)."""
        with self._transaction() as conn:
            if conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 0:
                raise _schedule_not_found(name)
            conn.execute("DELETE FROM schedule_runs WHERE schedule_name = ?", (name,))

    def _update_schedule(self, name: str, assignment: str, value: Any) -> None:
        with self._transaction() as conn:
            cursor = conn.execute(
                f"UPDATE schedules SET {assignment} WHERE name = ?", (value, name)
            )
            if cursor.rowcount == 0:
                raise _schedule_not_found(name)

    def record_fire(
        self, name: str, logical_time: str, workflow_id: str | None, outcome: str
    ) -> bool:
        """Record that a schedule fired (or skipped) at ``logical_time``.

        Returns False, changing nothing, if that logical time was already recorded
        (so two schedulers racing cannot fire it twice).
        """
        with self._transaction() as conn:
            if not conn.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone():
                raise _schedule_not_found(name)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO schedule_runs (schedule_name, logical_time, workflow_id, "
                "fired_at, outcome) VALUES (?, ?, ?, ?, ?)",
                (name, logical_time, workflow_id, time.time(), _text(outcome)),
            )
            return cursor.rowcount == 1

    def set_fire_outcome(self, name: str, logical_time: str, outcome: str) -> None:
        """Set the outcome of a recorded fire (``set_status`` does it for fired runs)."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE schedule_runs SET outcome = ? WHERE schedule_name = ? AND logical_time = ?",
                (_text(outcome), name, logical_time),
            )
            if cursor.rowcount == 0:
                raise StorageError(
                    f"schedule {name!r} has no fire recorded at {logical_time!r}; record_fire it "
                    f"first"
                )

    def fires(self, name: str) -> list[dict[str, Any]]:
        """A schedule's fire records, by logical time. A fire still RUNNING whose run's driver
        is gone reads RESUMABLE, as the run's own ``status()`` does."""
        rows = self._query(
            "SELECT f.schedule_name, f.logical_time, f.workflow_id, f.fired_at, f.outcome, "
            "r.status, r.driver_host, r.driver_pid, r.driver_start FROM schedule_runs f "
            "LEFT JOIN runs r ON r.workflow_id = f.workflow_id "
            "WHERE f.schedule_name = ? ORDER BY f.logical_time",
            (name,),
        )
        keys = ("schedule_name", "logical_time", "workflow_id", "fired_at", "outcome")
        fires = []
        for row in rows:
            fire = dict(zip(keys, row[:5]))
            if fire["outcome"] == WorkflowStatus.RUNNING.value and row[5] is not None:
                fire["outcome"] = _run_status(*row[5:]).value
            fires.append(fire)
        return fires

    def active_runs(self, name: str) -> int:
        """How many runs this schedule started are RUNNING (live driver) now."""
        rows = self._query(
            "SELECT status, driver_host, driver_pid, driver_start FROM runs "
            "WHERE schedule_name = ? AND status = ?",
            (name, WorkflowStatus.RUNNING.value),
        )
        return sum(_run_status(*row) is WorkflowStatus.RUNNING for row in rows)


# --------------------------------------------------------------------- helpers

def _check_id(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def _text(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else str(value)


def _run_status(
    stored: str, host: str | None, pid: int | None, start: str | None
) -> WorkflowStatus:
    status = WorkflowStatus(stored)
    if status is WorkflowStatus.RUNNING and not driver_alive(host, pid, start):
        return WorkflowStatus.RESUMABLE
    return status


def _exists_error(workflow_id: str, row: tuple[Any, ...]) -> WorkflowExistsError:
    status = _run_status(*row)
    if status is WorkflowStatus.RUNNING:
        return WorkflowExistsError(
            f"workflow {workflow_id!r} is already RUNNING (driver pid {row[2]} on {row[1]}); "
            f"wait for it, or cancel it"
        )
    return WorkflowExistsError(
        f"workflow {workflow_id!r} exists with status {status.value}; "
        f"resume({workflow_id!r}) or delete({workflow_id!r}) it first"
    )


def _not_found(workflow_id: str) -> WorkflowNotFoundError:
    return WorkflowNotFoundError(
        f"no workflow {workflow_id!r} in this storage; list_all() shows the ones there are "
        f"(check storage= or ${STORAGE_ENV})"
    )


def _schedule_not_found(name: str) -> ScheduleNotFoundError:
    return ScheduleNotFoundError(
        f"no schedule {name!r} in this storage; list the schedules to see the ones there are"
    )


def _require_run(conn: sqlite3.Connection, workflow_id: str) -> None:
    if not conn.execute("SELECT 1 FROM runs WHERE workflow_id = ?", (workflow_id,)).fetchone():
        raise _not_found(workflow_id)


def _schedule_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    schedule = dict(zip(_SCHEDULE_COLUMNS.split(", "), row))
    schedule["params"] = json.loads(schedule["params"])
    schedule["catchup"] = bool(schedule["catchup"])
    schedule["paused"] = bool(schedule["paused"])
    return schedule
