"""The SQLite layer of a workflow storage folder: schema, checks, connections, transactions.

``workflows.db`` is in WAL mode with a busy timeout; each thread of each process
opens its own connection, and every read-modify-write runs in ``BEGIN IMMEDIATE``.
The file is never opened outside SQLite (closing any descriptor of it would drop this
process's SQLite locks). The records kept in it are :mod:`sluice.libs.workflow.storage`'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sluice.exceptions import SluiceError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
STORAGE_ENV = "SLUICE_WORKFLOW_STORAGE"
DB_NAME = "workflows.db"
# "SLWF" in PRAGMA application_id marks a database as sluice's workflow storage.
APPLICATION_ID = 0x534C5746

_SCHEMA = """
CREATE TABLE runs (
    workflow_id   TEXT PRIMARY KEY,
    status        TEXT NOT NULL,     -- as stored: RUNNING with a dead driver reads RESUMABLE
    created       REAL NOT NULL,     -- unix seconds
    updated       REAL NOT NULL,
    driver_pid    INTEGER,           -- the process that runs it (set while RUNNING)
    driver_host   TEXT,
    driver_start  TEXT,              -- the driver's start time token, to tell a reused pid apart
    dag           BLOB NOT NULL,     -- opaque bytes from the engine (the pickled DAG and arguments)
    output_step   TEXT,
    error         TEXT,
    schedule_name TEXT,
    logical_time  TEXT               -- ISO 8601, for runs a schedule fired
);
CREATE INDEX runs_by_schedule ON runs (schedule_name, status);
CREATE TABLE steps (
    workflow_id TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,       -- StepStatus
    attempts    INTEGER NOT NULL,    -- how many times the step started
    started     REAL,
    finished    REAL,
    duration    REAL,
    error       TEXT,
    checkpoint  TEXT,                -- path relative to the folder; set only when SUCCESSFUL
    cache_key   TEXT,
    PRIMARY KEY (workflow_id, step_id)
);
CREATE TABLE schedules (
    name              TEXT PRIMARY KEY,
    target            TEXT NOT NULL,
    cron              TEXT NOT NULL,
    timezone          TEXT NOT NULL,
    params            TEXT NOT NULL,  -- JSON object
    catchup           INTEGER NOT NULL,
    max_active_runs   INTEGER NOT NULL,
    paused            INTEGER NOT NULL,
    created           REAL NOT NULL,
    last_logical_time TEXT            -- ISO 8601 of the last fired logical time; NULL = never
);
CREATE TABLE schedule_runs (
    schedule_name TEXT NOT NULL,
    logical_time  TEXT NOT NULL,
    workflow_id   TEXT,
    fired_at      REAL NOT NULL,
    outcome       TEXT NOT NULL,      -- the run's status (kept current by set_status) or SKIPPED_*
    PRIMARY KEY (schedule_name, logical_time)
);
"""
class StorageError(SluiceError):
    """The workflow storage cannot be used as asked (corrupt, too new, or a bad request)."""


class StorageNotFoundError(StorageError):
    """No workflow storage is at that folder (and the call would not create one)."""


class WorkflowExistsError(StorageError):
    """A run with that workflow id already exists (or is RUNNING under a live driver)."""


class WorkflowNotFoundError(StorageError):
    """No run with that workflow id is in the storage."""


class ScheduleNotFoundError(StorageError):
    """No schedule with that name is in the storage."""


def _no_storage_message(folder: Path, is_default: bool) -> str:
    """One line: no storage at ``folder``, and how to name the right one."""
    if is_default:
        return (f"no workflow storage at {str(folder)!r}, the default (no {DB_NAME} there: "
                f"nothing was run or scheduled with it); pass the folder your runs use with "
                f"--storage (storage= in Python) or set ${STORAGE_ENV}")
    return (f"no workflow storage at {str(folder)!r} (no {DB_NAME} there: nothing was run or "
            f"scheduled with it); check the path, or pass the folder your runs use (by default "
            f"{str(default_folder())!r}) with --storage (storage= in Python)")


def default_folder() -> Path:
    """The folder used by default: ``$SLUICE_WORKFLOW_STORAGE``, else ``~/.sluice/workflows``."""
    configured = os.environ.get(STORAGE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".sluice" / "workflows"


class Database:
    """The SQLite database of a storage folder: one connection per thread and process,
    checked when first opened, write transactions taken up front.

    ``folder`` defaults to :func:`default_folder` and is created if missing, unless
    ``create=False`` (what only reads, or changes what is there, passes it): then a
    folder without a database raises :class:`StorageNotFoundError` and nothing is
    created. The database is opened and checked here: one written by a newer sluice,
    one that is not sluice's, or a corrupt one raises :class:`StorageError` and is
    left untouched.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, create: bool = True):
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        self.db_path = self.folder / DB_NAME
        if not create and not self.db_path.is_file():
            raise StorageNotFoundError(_no_storage_message(self.folder, folder is None))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the workflow storage folder {str(self.folder)!r}: {exc}; pass "
                f"storage= (or set {STORAGE_ENV}) to a writable folder"
            ) from exc
        self._local = threading.local()
        self._checked_in_pid: int | None = None
        self._connection()  # fail now, not at the first write, on a bad database
        from sluice.libs.workflow import dashboard_page

        dashboard_page.note_storage(self.folder)  # the dashboard's Workflows page lists it

    def close(self) -> None:
        """Close this thread's connection (the next call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    # ---------------------------------------------------------------- connections

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (never one inherited by fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = self._open()
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        # No open()/close() of the database file outside SQLite, ever: closing any descriptor
        # of a file drops every POSIX lock this process holds on it, SQLite's read locks
        # included, and another process could then checkpoint and delete the WAL under a live
        # connection. A file that is not a database fails SQLite's first read, untouched.
        if self._checked_in_pid == os.getpid():
            return self._connect()
        # The first connection of a process checks the file and may create the schema and
        # switch it to WAL: processes opening a fresh folder at once take turns (a lock on a
        # file of its own, so SQLite's locks are never touched), or their journal-mode
        # switches and schema transactions wait on each other until the busy timeout.
        with _init_lock(self.folder):
            conn = self._connect(check=True)
        self._checked_in_pid = os.getpid()
        return conn

    def _connect(self, check: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True
        )
        try:
            if check:
                self._check_contents(conn)
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL survives process crashes
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._create_schema(conn)
        except StorageError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            conn.close()
            raise self._sqlite_error(exc) from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._corrupt(str(exc)) from exc
        return conn

    def _check_contents(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"workflow database {str(self.db_path)!r} was written by a newer sluice (schema "
                f"{version} > {SCHEMA_VERSION}); upgrade sluice or use another storage folder"
            )
        if version == 0:
            self._check_foreign(conn)
            return
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise self._foreign()
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            detail = "; ".join(" ".join(problem.split()) for problem in problems)
            raise self._corrupt(detail.replace("*** in database main *** ", ""))

    def _check_foreign(self, conn: sqlite3.Connection) -> None:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise self._foreign()

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it while this one waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._check_foreign(conn)
                for statement in re.split(r";\s*\n", _SCHEMA):  # comments hold "; " too
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _corrupt(self, detail: str) -> StorageError:
        return StorageError(
            f"workflow database {str(self.db_path)!r} is corrupt or not a database ({detail}); "
            f"it was left untouched: restore it from a backup, move it away, or use another "
            f"storage folder"
        )

    def _foreign(self) -> StorageError:
        return StorageError(
            f"{str(self.db_path)!r} is an SQLite database that sluice did not write; it was "
            f"left untouched: move it away or use another storage folder"
        )

    def _sqlite_error(self, exc: sqlite3.Error) -> StorageError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StorageError(
                f"workflow database {str(self.db_path)!r} stayed locked for over "
                f"{BUSY_TIMEOUT_S:g} s ({exc}); another process holds a long transaction, or the "
                f"folder is on a network filesystem without working locks (use a local folder)"
            )
        if type(exc) is sqlite3.DatabaseError:
            return self._corrupt(str(exc))
        return StorageError(f"workflow database {str(self.db_path)!r}: {exc}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken up front (``BEGIN IMMEDIATE``) so it never deadlocks."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.rollback()
            if isinstance(exc, sqlite3.Error):
                raise self._sqlite_error(exc) from exc
            raise

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc) from exc


@contextlib.contextmanager
def _init_lock(folder: Path) -> Iterator[None]:
    """Exclusive among processes opening ``folder``'s database for the first time."""
    import fcntl

    fd = os.open(folder / ".init.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching the journal mode needs a moment alone with the file; a process that
    # is opening the database at the same instant may make it report "locked".
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
