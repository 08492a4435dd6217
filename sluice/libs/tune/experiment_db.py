"""An experiment's state in SQLite: ``storage_path/name/experiment.db``.

Tables: ``experiment`` (the pickled spec: trainable, param space, configs; the searcher's
and scheduler's state), ``trials`` (one row per trial: config, status, last result,
latest checkpoint, failures), ``results`` (every reported result), ``checkpoints`` (every
checkpoint kept, with its metrics). The controller buffers changes and writes them in
one transaction (:meth:`ExperimentDB.commit`): a new checkpoint at once, other trial
changes within ``TRIALS_EVERY_S``, results within ``COMMIT_EVERY_S``. A result costs a
row insert, never a rewrite of the experiment; a checkpoint's folder is deleted (by
retention) only once the state no longer names it; a driver killed at any moment leaves
the state of its last commit (WAL mode).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import sqlite3
import time
from typing import Any

from sluice.libs.tune.trial import Trial

DB_NAME = "experiment.db"
COMMIT_EVERY_S = 0.05
"""Results alone are committed at most this often (see :meth:`ExperimentDB.due_in`)."""
TRIALS_EVERY_S = 0.01
"""Trial changes are committed at most this often (see :meth:`ExperimentDB.due_in`)."""
APPLICATION_ID = 0x534C5455  # "SLTU": a sluice.tune experiment

_SCHEMA = """
CREATE TABLE experiment (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE trials (
    trial_id         TEXT PRIMARY KEY,
    idx              INTEGER NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    config           BLOB NOT NULL,     -- pickled
    evaluated_params TEXT NOT NULL,     -- json
    experiment_tag   TEXT NOT NULL,
    resources        TEXT NOT NULL,     -- json
    path             TEXT NOT NULL,
    last_result      TEXT NOT NULL,     -- json
    checkpoint       TEXT,              -- the latest checkpoint's folder
    checkpoint_index INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    num_failures     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE results (
    trial_id  TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    metrics   TEXT NOT NULL            -- json
);
CREATE INDEX results_by_trial ON results (trial_id, iteration);
CREATE TABLE checkpoints (
    trial_id  TEXT NOT NULL,
    path      TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    metrics   TEXT NOT NULL,           -- json
    PRIMARY KEY (trial_id, path)
);
"""


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for a metric value (numpy scalars as numbers, NaN kept)."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return repr(value)


def dumps(value: Any) -> str:
    """``value`` as JSON (NaN and infinities allowed, as Python's json writes them)."""
    return json.dumps(value, default=_plain)


def loads(text: str) -> Any:
    return json.loads(text)


def has_experiment(path: str) -> bool:
    """True when ``path`` holds an experiment's database."""
    return os.path.isfile(os.path.join(path, DB_NAME))


class ExperimentDB:
    """One experiment's database (open it from the driver only)."""

    def __init__(self, path: str, create: bool = True):
        self.path = path
        file = os.path.join(path, DB_NAME)
        if not create and not os.path.isfile(file):
            raise FileNotFoundError(file)
        os.makedirs(path, exist_ok=True)
        fresh = not os.path.exists(file)
        self.conn = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        if fresh:
            self.conn.executescript(_SCHEMA)
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        elif self.conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise ValueError(f"{file} is not a sluice.tune experiment database")
        self._results: list[tuple[str, int, str]] = []
        self._trials: dict[str, Trial] = {}
        self._checkpoints: list[tuple[str, str, int, str]] = []
        self._dropped: list[tuple[str, str]] = []
        self._meta: dict[str, Any] = {}
        self._last_commit = time.monotonic()

    # -- buffered changes, written by commit() ----------------------------------------------
    def due_in(self) -> float | None:
        """Seconds until the buffered changes should be committed (0: now; None: nothing
        is buffered). A checkpoint is written at once (its predecessors' folders are
        deleted only after); other trial changes (started, ended, paused, new trials and
        the searcher's state) at most every ``TRIALS_EVERY_S``; results alone every
        ``COMMIT_EVERY_S``. So a driver killed loses at most that much of the latest
        changes, and each trial resumes from its latest checkpoint."""
        if self._checkpoints or self._dropped:
            return 0.0
        if self._trials or self._meta:
            every = TRIALS_EVERY_S
        elif self._results:
            every = COMMIT_EVERY_S
        else:
            return None
        return max(0.0, every - (time.monotonic() - self._last_commit))

    def due(self) -> bool:
        """Whether to commit now (see :meth:`due_in`)."""
        left = self.due_in()
        return left is not None and left <= 0.0

    def add_result(self, trial_id: str, iteration: int, metrics: dict[str, Any],
                   text: str | None = None) -> None:
        """Record a result (``text``: its JSON, when the trial actor encoded it already)."""
        self._results.append((trial_id, iteration, text if text is not None else dumps(metrics)))

    def save_trial(self, trial: Trial) -> None:
        self._trials[trial.trial_id] = trial

    def add_checkpoint(self, trial_id: str, path: str, iteration: int,
                       metrics: dict[str, Any]) -> None:
        self._checkpoints.append((trial_id, path, iteration, dumps(metrics)))

    def drop_checkpoint(self, trial_id: str, path: str) -> None:
        """Forget a checkpoint; its folder is deleted once that is committed."""
        self._dropped.append((trial_id, path))

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = value

    def pending(self) -> bool:
        return bool(self._results or self._trials or self._checkpoints or self._dropped
                    or self._meta)

    def commit(self) -> None:
        """Write every buffered change in one transaction."""
        if not self.pending():
            return
        trials = [(t.trial_id, t.index, t.name, t.status, pickle.dumps(t.config),
                   dumps(t.evaluated_params), t.experiment_tag, dumps(t.resources), t.path,
                   dumps(t.last_result), t.checkpoint, t.checkpoint_index, t.error,
                   t.num_failures) for t in self._trials.values()]
        meta = [(key, pickle.dumps(value)) for key, value in self._meta.items()]
        conn = self.conn
        conn.execute("BEGIN")
        try:
            if self._results:
                conn.executemany("INSERT INTO results VALUES (?, ?, ?)", self._results)
            if trials:
                conn.executemany("INSERT OR REPLACE INTO trials VALUES "
                                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", trials)
            if self._checkpoints:
                conn.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                                 self._checkpoints)
            if self._dropped:
                conn.executemany("DELETE FROM checkpoints WHERE trial_id = ? AND path = ?",
                                 self._dropped)
            if meta:
                conn.executemany("INSERT OR REPLACE INTO experiment VALUES (?, ?)", meta)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for _, path in self._dropped:  # no longer named by the committed state
            shutil.rmtree(path, ignore_errors=True)
        self._results.clear()
        self._trials.clear()
        self._checkpoints.clear()
        self._dropped.clear()
        self._meta.clear()
        self._last_commit = time.monotonic()

    # -- reads ---------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM experiment WHERE key = ?", (key,)).fetchone()
        return default if row is None else pickle.loads(row[0])

    def trials(self) -> list[Trial]:
        """Every trial, in the order they were added."""
        rows = self.conn.execute(
            "SELECT trial_id, idx, name, status, config, evaluated_params, experiment_tag, "
            "resources, path, last_result, checkpoint, checkpoint_index, error, num_failures "
            "FROM trials ORDER BY idx").fetchall()
        latest = dict(self.conn.execute(
            "SELECT trial_id, metrics FROM results WHERE rowid IN "
            "(SELECT MAX(rowid) FROM results GROUP BY trial_id)").fetchall())
        out = []
        for (trial_id, idx, name, status, config, params, tag, resources, path, last,
             checkpoint, checkpoint_index, error, failures) in rows:
            config = pickle.loads(config)
            last_result = loads(last)
            # a trial's row is written when it changes, its results as they come: the
            # newest result is the trial's last, with the row's end flags
            if trial_id in latest:
                newest = loads(latest[trial_id])
                if newest.get("training_iteration", 0) >= last_result.get("training_iteration", 0):
                    last_result = dict(newest, config=config,
                                       done=last_result.get("done", newest.get("done", False)))
            out.append(Trial(trial_id, config, name=name, index=idx, status=status,
                             evaluated_params=loads(params), experiment_tag=tag,
                             resources=loads(resources), path=path, last_result=last_result,
                             checkpoint=checkpoint, checkpoint_index=checkpoint_index,
                             error=error, num_failures=failures))
        return out

    def results(self, trial_id: str) -> list[dict[str, Any]]:
        """Every result trial ``trial_id`` reported, in order."""
        rows = self.conn.execute("SELECT metrics FROM results WHERE trial_id = ? "
                                 "ORDER BY rowid", (trial_id,)).fetchall()
        return [loads(m) for (m,) in rows]

    def checkpoints(self, trial_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(folder, metrics) of every checkpoint trial ``trial_id`` keeps, oldest first."""
        rows = self.conn.execute("SELECT path, metrics FROM checkpoints WHERE trial_id = ? "
                                 "ORDER BY iteration", (trial_id,)).fetchall()
        return [(path, loads(m)) for path, m in rows]

    def all_checkpoints(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(trial id, folder, metrics) of every checkpoint kept."""
        rows = self.conn.execute("SELECT trial_id, path, metrics FROM checkpoints").fetchall()
        return [(trial_id, path, loads(m)) for trial_id, path, m in rows]

    def count_results(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self.commit()
        self.conn.close()


def finite(value: Any) -> bool:
    """True for a number that is neither NaN nor infinite."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
