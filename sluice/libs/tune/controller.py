"""The experiment's controller loop, in the driver: it asks the searcher for configs and the
scheduler for decisions, starts, pauses, resumes and stops trials on trial actors, and
writes every change to the experiment's database.

One loop iteration: start what the free resources allow (the scheduler picks among
pending and paused trials, the searcher makes new ones), wait for the next events of the
running trials (``sluice.wait`` over one outstanding call per trial), then handle each:
record the result, check the stop criteria, ask the scheduler (CONTINUE: ask the actor
for the next event; PAUSE: checkpoint and free the actor; STOP: end the trial), and
commit what changed in one transaction.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

from sluice.libs.tune.checkpoint import pack, retention_victims, unpack
from sluice.libs.tune.config import CheckpointConfig, FailureConfig
from sluice.libs.tune.experiment_db import ExperimentDB
from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from sluice.libs.tune.search.searcher import Searcher
from sluice.libs.tune.search_space import format_vars
from sluice.libs.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial

logger = logging.getLogger(__name__)

WAIT_S = 0.5
"""Longest wait for trial events before the loop looks at its budget and progress again."""


class TuneError(RuntimeError):
    """The experiment could not run (bad settings, an impossible trial, fail_fast)."""


class _Slot:
    """A trial actor and the trial it runs (None: idle, kept for the next trial)."""

    __slots__ = ("actor", "resources", "trial", "ref", "finished", "unstopped")

    def __init__(self, actor: Any, resources: dict[str, float]):
        self.actor = actor
        self.resources = resources
        self.trial: Trial | None = None
        self.ref: Any = None  # the outstanding start()/next() call
        self.finished = False  # the trial's trainable returned
        self.unstopped = False  # its last trial, stopped early, still waits in its trainable


class TuneController:
    """Runs one experiment to its end (see the module's docstring).

    ``make_actor(resources)`` starts a trial actor holding ``resources``; ``trials`` are
    those a restore brings back (their statuses as saved).
    """

    def __init__(self, *, db: ExperimentDB, experiment_name: str, experiment_path: str,
                 trainable_name: str, param_space: dict[str, Any], searcher: Searcher,
                 scheduler: TrialScheduler, make_actor: Callable[[dict[str, float]], Any],
                 resources_of: Callable[[dict[str, Any]], dict[str, float]],
                 metric: str | None, mode: str | None, num_samples: int,
                 max_concurrent_trials: int | None, time_budget_s: float | None,
                 reuse_actors: bool, stop: Any, checkpoint_config: CheckpointConfig,
                 failure_config: FailureConfig, progress: Any = None,
                 trial_name_creator: Callable[[Trial], str] | None = None,
                 trial_dirname_creator: Callable[[Trial], str] | None = None,
                 trials: list[Trial] | None = None, next_index: int = 0,
                 id_prefix: str | None = None, searcher_finished: bool = False):
        self.db = db
        self.experiment_name = experiment_name
        self.experiment_path = experiment_path
        self.trainable_name = trainable_name
        self.param_space = param_space
        self.searcher = searcher
        self.scheduler = scheduler
        self.make_actor = make_actor
        self.resources_of = resources_of
        self.metric, self.mode = metric, mode
        self.num_samples = num_samples
        self.max_concurrent = max_concurrent_trials
        self.time_budget_s = time_budget_s
        self.reuse_actors = reuse_actors
        self.stop_criteria = stop
        self.checkpoint_config = checkpoint_config
        self.failure_config = failure_config
        self.progress = progress
        self.trial_name_creator = trial_name_creator
        self.trial_dirname_creator = trial_dirname_creator
        self.trials: list[Trial] = list(trials or [])
        self.next_index = next_index
        self.id_prefix = id_prefix or uuid.uuid4().hex[:5]
        self.searcher_finished = searcher_finished
        self.slots: list[_Slot] = []
        self.total = self._cluster_total()
        # on a cluster, checkpoints travel to and from other nodes as archives (runner.py)
        self.driver_node = _driver_node()
        self._used: dict[str, float] = {}
        self._started = time.monotonic()
        self._budget_hit = False
        self._by_ref: dict[Any, _Slot] = {}
        self.num_results = 0
        self._kept: dict[str, list[tuple[str, dict]]] = {}  # trial id -> (folder, metrics)
        self._state_changed = False  # the searcher's or scheduler's state to save
        self._waiting = sum(1 for t in self.trials if t.status in (PENDING, PAUSED))
        self._last_resources: dict[str, float] | None = None  # of the newest trial
        # no decision depends on a result: trials report without waiting (runner.py)
        self.fifo = type(scheduler) is FIFOScheduler
        self.buffered = self.fifo and stop is None
        # trials made ahead, waiting for resources (Ray's TUNE_MAX_PENDING_TRIALS_PG): many
        # for the variant generator, one for a searcher that learns from each result
        self.max_pending = max_pending_trials(searcher)
        self.result_seconds = 0.0  # the driver's time handling results (per-result cost)
        self.result_cpu_seconds = 0.0  # the same in CPU time of the controller's thread

    # -- what schedulers call -------------------------------------------------------------
    def get_trials(self) -> list[Trial]:
        """Every trial of the experiment, in the order added."""
        return self.trials

    def get_live_trials(self) -> list[Trial]:
        """The trials not finished (pending, running, paused)."""
        return [t for t in self.trials if not t.is_finished()]

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        """Pause ``trial``: checkpoint it (when running) and free its actor."""
        slot = self._slot_of(trial)
        if slot is not None:
            if should_checkpoint:
                self._save(slot)
            self._release(slot)
        self._set_status(trial, PAUSED)
        self.db.save_trial(trial)

    def checkpoint_trial(self, trial: Trial) -> str | None:
        """Checkpoint running ``trial`` now (a class trainable saves; a function trainable's
        is the latest it reported); its latest checkpoint's folder, or None."""
        slot = self._slot_of(trial)
        if slot is not None:
            self._save(slot)
        return trial.checkpoint

    def reset_trial(self, trial: Trial, config: dict[str, Any], experiment_tag: str,
                    checkpoint: str | None) -> None:
        """Give paused or pending ``trial`` a new config and the checkpoint it resumes from
        (copied into its own folder: the source's retention may delete the original)."""
        if trial.status not in (PAUSED, PENDING):
            raise TuneError(f"reset_trial({trial.name}): only a paused or pending trial can "
                            f"take a new config, not a {trial.status} one")
        trial.config = config
        trial.experiment_tag = experiment_tag
        if checkpoint is not None:
            self.db.commit()
            metrics = next((m for trial_id, path, m in self.db.all_checkpoints()
                            if path == checkpoint), {})
            target = os.path.join(trial.path, f"checkpoint_{trial.checkpoint_index:06d}")
            shutil.copytree(checkpoint, target, dirs_exist_ok=True)
            trial.checkpoint_index += 1
            self._new_checkpoint(trial, target, dict(metrics) or dict(trial.last_result))
        self.db.save_trial(trial)

    def stop_trial(self, trial: Trial) -> None:
        """End ``trial`` (it counts as terminated); the scheduler and searcher hear of it."""
        if trial.is_finished():
            return
        was_running = trial.status == RUNNING
        slot = self._slot_of(trial)
        if slot is not None:
            self._release(slot)
        self._set_status(trial, TERMINATED)
        if was_running:  # its last result ends it, as Ray marks it
            trial.last_result = dict(trial.last_result, done=True)
        result = dict(trial.last_result)
        if was_running:
            self.scheduler.on_trial_complete(self, trial, result)
        else:
            self.scheduler.on_trial_remove(self, trial)
        self.searcher.on_trial_complete(trial.trial_id, result or None)
        self.db.save_trial(trial)
        self._report_end(trial)

    def _set_status(self, trial: Trial, status: str) -> None:
        if trial.status in (PENDING, PAUSED):
            self._waiting -= 1
        if status in (PENDING, PAUSED):
            self._waiting += 1
        trial.status = status

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Run until every trial finished (or the time budget ran out)."""
        import sluice

        try:
            while True:
                self._check_budget()
                self._start_trials()
                running = [s for s in self.slots if s.ref is not None]
                if not running:
                    if self._nothing_left():
                        break
                    time.sleep(0.01)  # the searcher has nothing now: ask it again shortly
                    continue
                refs = [s.ref for s in running]
                left = self.db.due_in()  # (buffered changes wait no longer than they should)
                timeout = WAIT_S if left is None else min(WAIT_S, left)
                ready, _ = sluice.wait(refs, num_returns=1, timeout=timeout)
                if ready and len(refs) > 1:  # and every other one ready now
                    ready, _ = sluice.wait(refs, num_returns=len(refs), timeout=0)
                began, began_cpu = time.perf_counter(), time.thread_time()
                for ref in ready:
                    self._handle(ref)
                if self._state_changed:
                    self.db.set_meta("state", self._state())
                    self._state_changed = False
                if self.db.due():
                    self.db.commit()
                self.result_seconds += time.perf_counter() - began
                self.result_cpu_seconds += time.thread_time() - began_cpu
                if self.progress is not None:
                    self.progress.update(self)
        finally:
            self.db.set_meta("state", self._state())
            self.db.commit()
            self._close_actors()
            if self.progress is not None:
                self.progress.close(self)

    def _nothing_left(self) -> bool:
        if any(t.status in (PENDING, PAUSED, RUNNING) for t in self.trials):
            return False
        return self.searcher_finished or self._budget_hit

    # -- starting trials ------------------------------------------------------------------
    def _start_trials(self) -> None:
        self._fill()
        for slot in self.slots:  # idle actors whose last trial is still in its trainable
            if slot.unstopped and slot.trial is None:
                slot.unstopped = False
                slot.actor.stop.remote()  # not awaited: calls on an actor run in order

    def _fill(self) -> None:
        while True:
            if self.max_concurrent is not None and self._running_count() >= self.max_concurrent:
                return
            # (a new trial is PENDING only until it starts, below: the scheduler is asked
            # only while older ones wait)
            # (asked only while a trial could start: with trials made ahead waiting, asking
            # on every result would scan them all each time)
            trial = (self.scheduler.choose_trial_to_run(self)
                     if self._waiting and self._room() else None)
            if trial is None or not self._fits(trial.resources):
                # nothing can start now: add a trial (it starts if it fits; else it waits,
                # and a scheduler that judges trials together, HyperBand, sees it)
                new = self._new_trial()
                if new is None:
                    return
                if trial is not None or not self._fits(new.resources):
                    continue
                trial = new
            self._run(trial)

    def _new_trial(self) -> Trial | None:
        if self.searcher_finished or self._budget_hit:
            return None
        if self._last_resources is not None and not self._fits(self._last_resources) and (
                self.fifo or self._waiting >= self.max_pending):
            return None  # no room for one more like the last (made once some trial ends)
        trial_id = f"{self.id_prefix}_{self.next_index:05d}"
        config = self.searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            self.searcher_finished = True
            if not self.trials:
                raise TuneError("the search produced no trial: param_space and num_samples "
                                "make no config; give num_samples >= 1 and non-empty grids")
            return None
        if config is None:
            return None
        if not isinstance(config, dict):
            raise TuneError(f"{type(self.searcher).__name__}.suggest() returned "
                            f"{type(config).__name__}; it must return a config dict, None or "
                            f"Searcher.FINISHED")
        resolved = self.searcher.resolved_values(trial_id) or {}
        index = self.next_index
        self.next_index += 1
        trial = Trial(trial_id, config, trainable_name=self.trainable_name,
                      evaluated_params=resolved,
                      experiment_tag=f"{index}_{format_vars(resolved)}" if resolved else str(index),
                      resources=self.resources_of(config), index=index)
        self._check_feasible(trial)
        self._last_resources = trial.resources
        if self.trial_name_creator is not None:
            trial.name = str(self.trial_name_creator(trial))
        dirname = (self.trial_dirname_creator(trial) if self.trial_dirname_creator is not None
                   else f"{self.trainable_name}_{trial_id}")
        trial.path = os.path.join(self.experiment_path, str(dirname))
        self.trials.append(trial)
        self._waiting += 1
        self.scheduler.on_trial_add(self, trial)
        self.db.save_trial(trial)
        self._state_changed = True
        return trial

    def _run(self, trial: Trial) -> None:
        slot = self._idle_slot(trial.resources)
        if slot is None:
            slot = _Slot(self.make_actor(trial.resources), trial.resources)
            self.slots.append(slot)
            self._take(trial.resources)
        slot.trial = trial
        slot.finished = slot.unstopped = False  # start() ends the last trial first
        self._set_status(trial, RUNNING)
        iteration, time_total = self._resume_point(trial)
        spec = {"trial_id": trial.trial_id, "trial_name": trial.name, "trial_dir": trial.path,
                "experiment_name": self.experiment_name, "config": trial.config,
                "resources": trial.resources, "checkpoint": trial.checkpoint,
                "checkpoint_index": trial.checkpoint_index,
                "iteration": iteration, "time_total_s": time_total,
                "buffered": self.buffered, "driver_node": self.driver_node,
                "checkpoint_data": (pack(trial.checkpoint) if self.driver_node is not None
                                    and trial.checkpoint else None)}
        self._submit(slot, slot.actor.start.remote(spec))
        self.db.save_trial(trial)

    def _resume_point(self, trial: Trial) -> tuple[int, float]:
        """(iteration, seconds) a trial starts from: its checkpoint's, or zero."""
        if not trial.checkpoint:
            return 0, 0.0
        self.db.commit()
        metrics = dict(self.db.checkpoints(trial.trial_id)).get(trial.checkpoint, {})
        return metrics.get("training_iteration", 0), metrics.get("time_total_s", 0.0)

    def _idle_slot(self, resources: dict[str, float]) -> _Slot | None:
        for slot in self.slots:
            if slot.trial is None and slot.resources == resources:
                return slot
        return None

    def _submit(self, slot: _Slot, ref: Any) -> None:
        slot.ref = ref
        self._by_ref[ref] = slot

    # -- resources ------------------------------------------------------------------------
    @staticmethod
    def _cluster_total() -> dict[str, float]:
        import sluice

        return {k: float(v) for k, v in sluice.cluster_resources().items()}

    def _fits(self, resources: dict[str, float]) -> bool:
        if self._idle_slot(resources) is not None:
            return True
        free = {k: self.total.get(k, 0.0) - self._used.get(k, 0.0) for k in self.total}
        if all(free.get(k, 0.0) + 1e-9 >= v for k, v in resources.items()):
            return True
        # an idle actor of other resources gives its share back for this trial
        for slot in self.slots:
            if slot.trial is None:
                self._drop(slot)
                return self._fits(resources)
        return False

    def _room(self) -> bool:
        """Whether a trial like the newest could start now (always, when none runs)."""
        if self._last_resources is None or not any(s.trial for s in self.slots):
            return True
        return self._fits(self._last_resources)

    def _take(self, resources: dict[str, float]) -> None:
        for key, value in resources.items():
            self._used[key] = self._used.get(key, 0.0) + value

    def _check_feasible(self, trial: Trial) -> None:
        check_feasible(trial.resources, self.total, f"trial {trial.name}")

    def _running_count(self) -> int:
        return sum(1 for s in self.slots if s.trial is not None)

    # -- events ---------------------------------------------------------------------------
    def _handle(self, ref: Any) -> None:
        import sluice

        slot = self._by_ref.pop(ref, None)
        if slot is None or slot.ref is not ref or slot.trial is None:
            return
        slot.ref = None
        trial = slot.trial
        try:
            event = sluice.get(ref)
        except Exception as exc:  # noqa: BLE001 - the actor died: the trial failed
            self._failed(trial, slot, f"{type(exc).__name__}: {exc}", None, actor_lost=True)
            return
        events = event["events"] if event["kind"] == "batch" else (event,)
        last = len(events) - 1
        for i, event in enumerate(events):
            kind = event["kind"]
            if kind == "result":
                self._on_result(trial, slot, event, ask_next=i == last)
            elif kind == "done":
                self._on_done(trial, slot)
            else:
                self._failed(trial, slot, event["error"], event.get("exception"))
            if slot.trial is not trial:
                return  # it ended (the rest of a batch is dropped)

    def _on_result(self, trial: Trial, slot: _Slot, event: dict[str, Any],
                   ask_next: bool = True) -> None:
        metrics = event["metrics"]
        self.num_results += 1
        if self.num_results == 1:
            self._check_metrics(trial, metrics)
        result = dict(metrics, config=trial.config)
        trial.last_result = result
        self.db.add_result(trial.trial_id, metrics["training_iteration"], metrics,
                           event.get("text"))
        if event.get("checkpoint"):
            self._new_checkpoint(trial, self._landed(trial, event), metrics)
        if self._should_stop(trial, result):
            decision = TrialScheduler.STOP
        else:
            decision = self.scheduler.on_trial_result(self, trial, result)
        if decision != TrialScheduler.STOP:
            self.searcher.on_trial_result(trial.trial_id, result)
        if trial.status != RUNNING or slot.trial is not trial:
            return  # the scheduler paused or stopped it itself
        if decision == TrialScheduler.STOP or result.get("done"):
            trial.stop_reason = "stopped" if decision == TrialScheduler.STOP else "done"
            self.stop_trial(trial)
        elif decision == TrialScheduler.PAUSE:
            self.pause_trial(trial)
        elif ask_next:
            until = self.scheduler.continue_until(trial) if self.stop_criteria is None else None
            self._submit(slot, slot.actor.next.remote(until))

    def _on_done(self, trial: Trial, slot: _Slot) -> None:
        trial.last_result = dict(trial.last_result, done=True)
        trial.stop_reason = "done"
        slot.finished = True  # the trainable returned: nothing to stop on the actor
        self.stop_trial(trial)

    def _failed(self, trial: Trial, slot: _Slot, text: str, blob: bytes | None,
                actor_lost: bool = False) -> None:
        trial.num_failures += 1
        if actor_lost:
            self._drop(slot)
        else:
            self._release(slot)
        retries = self.failure_config.max_failures
        if retries == -1 or trial.num_failures <= retries:
            logger.warning("trial %s failed (%d of %s tries); restarting it from %s:\n%s",
                           trial.name, trial.num_failures,
                           "unlimited" if retries == -1 else retries + 1,
                           trial.checkpoint or "its start", text)
            self._set_status(trial, PENDING)  # resumes from its latest checkpoint
            self.db.save_trial(trial)
            return
        self._set_status(trial, ERROR)
        trial.error = text
        self.scheduler.on_trial_error(self, trial)
        self.searcher.on_trial_complete(trial.trial_id, None, error=True)
        self.db.save_trial(trial)
        if self.failure_config.fail_fast:
            raise TuneError(f"trial {trial.name} failed and FailureConfig(fail_fast=True) "
                            f"stops the experiment:\n{text}")
        self._report_end(trial)

    def _check_metrics(self, trial: Trial, metrics: dict[str, Any]) -> None:
        """The first result must hold the metric the scheduler and the searcher rank by
        (as Ray Tune checks): a misspelt metric would otherwise rank nothing, silently."""
        for who, metric in ((self.scheduler, self.scheduler.metric),
                            (self.searcher, self.searcher.metric)):
            if metric is not None and metric not in metrics and not (
                    isinstance(who, FIFOScheduler) and self.fifo):
                reported = sorted(k for k in metrics if k not in _AUTO_METRICS)
                raise TuneError(
                    f"trial {trial.name} reported {reported} (and the automatic "
                    f"training_iteration, time_total_s, ...), without {metric!r}, the metric "
                    f"{type(who).__name__} ranks trials by; report it with tune.report("
                    f"{{{metric!r}: ...}}) or give TuneConfig(metric=...) one of those")

    def _should_stop(self, trial: Trial, result: dict[str, Any]) -> bool:
        stop = self.stop_criteria
        if stop is None:
            return False
        if callable(stop):
            return bool(stop(trial.trial_id, result))
        for key, threshold in stop.items():
            if key not in result:
                raise TuneError(f"RunConfig(stop={stop!r}): trial {trial.name}'s result has no "
                                f"{key!r}; its metrics are "
                                f"{sorted(k for k in result if k != 'config')}")
            if result[key] >= threshold:
                return True
        return False

    def _check_budget(self) -> None:
        if self.time_budget_s is None or self._budget_hit:
            return
        if time.monotonic() - self._started >= self.time_budget_s:
            self._budget_hit = True
            logger.info("the time budget of %ss is spent: stopping every trial",
                        self.time_budget_s)
            for trial in list(self.trials):
                if not trial.is_finished():
                    trial.stop_reason = "time budget"
                    self.stop_trial(trial)

    # -- checkpoints ----------------------------------------------------------------------
    def _new_checkpoint(self, trial: Trial, path: str, metrics: dict[str, Any]) -> None:
        trial.checkpoint = path
        index = _checkpoint_number(path)
        if index is not None:
            trial.checkpoint_index = max(trial.checkpoint_index, index + 1)
        self.db.add_checkpoint(trial.trial_id, path, metrics.get("training_iteration", 0), metrics)
        self.db.save_trial(trial)  # a restore resumes it from this checkpoint
        self._retain(trial, path, metrics)

    def _retain(self, trial: Trial, latest: str, metrics: dict[str, Any]) -> None:
        keep = self.checkpoint_config.num_to_keep
        if keep is None:
            return
        kept = self._kept.get(trial.trial_id)
        if kept is None:  # (after a restore: the checkpoints kept before)
            kept = self._kept[trial.trial_id] = list(self.db.checkpoints(trial.trial_id))
        if all(p != latest for p, _ in kept):
            kept.append((latest, metrics))
        config = self.checkpoint_config
        for victim in retention_victims(kept, latest, keep, config.checkpoint_score_attribute,
                                        config.checkpoint_score_order):
            kept.remove(victim)
            self.db.drop_checkpoint(trial.trial_id, victim[0])  # (deleted once committed)

    def _save(self, slot: _Slot) -> None:
        import sluice

        trial = slot.trial
        if trial is None:
            return
        saved = sluice.get(slot.actor.save.remote())
        if saved.get("checkpoint"):
            self._new_checkpoint(trial, self._landed(trial, saved), dict(trial.last_result))

    def _landed(self, trial: Trial, event: dict[str, Any]) -> str:
        """The driver's folder of the checkpoint an event names: a trial on another node
        sent it as an archive, written here into the trial's folder."""
        data = event.get("checkpoint_data")
        if data is None:
            return event["checkpoint"]
        target = os.path.join(trial.path, os.path.basename(event["checkpoint"].rstrip("/")))
        return unpack(data, target)

    # -- actors ---------------------------------------------------------------------------
    def _slot_of(self, trial: Trial) -> _Slot | None:
        for slot in self.slots:
            if slot.trial is trial:
                return slot
        return None

    def _release(self, slot: _Slot) -> None:
        """The trial on ``slot`` ends: keep the actor for the next trial, or drop it."""
        if slot.ref is not None:
            self._by_ref.pop(slot.ref, None)
            slot.ref = None
        slot.trial = None
        self._state_changed = True
        if not self.reuse_actors:
            self._drop(slot)
            return
        # a trial still inside its trainable (the scheduler stopped it) is ended by the
        # actor's next start(); one left idle is told to stop after _start_trials
        slot.unstopped = not slot.finished

    def _drop(self, slot: _Slot) -> None:
        import sluice

        if slot in self.slots:
            self.slots.remove(slot)
            for key, value in slot.resources.items():
                self._used[key] = self._used.get(key, 0.0) - value
        if slot.ref is not None:
            self._by_ref.pop(slot.ref, None)
        try:
            sluice.kill(slot.actor)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _close_actors(self) -> None:
        for slot in list(self.slots):
            self._drop(slot)

    # -- state ----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state = {"next_index": self.next_index, "id_prefix": self.id_prefix,
                 "searcher_finished": self.searcher_finished}
        for name, obj, method in (("searcher", self.searcher, "get_state"),
                                  ("scheduler", self.scheduler, "save_state")):
            try:
                blob = pickle.dumps(getattr(obj, method)())
            except Exception as exc:  # noqa: BLE001 - a restore starts it afresh
                logger.debug("the %s's state does not pickle (%s)", name, exc)
                blob = None
            state[name] = blob
        return state

    def _report_end(self, trial: Trial) -> None:
        if self.progress is not None:
            self.progress.trial_ended(self, trial)


_AUTO_METRICS = frozenset({"training_iteration", "time_this_iter_s", "time_total_s", "timestamp",
                           "trial_id", "time_since_restore", "iterations_since_restore", "pid",
                           "hostname", "done"})
"""What the trial actor adds to every result (runner._Clock)."""


def max_pending_trials(searcher: Searcher) -> int:
    """How many trials may wait for resources at once (``TUNE_MAX_PENDING_TRIALS_PG`` in the
    environment, as Ray reads it; else 200 for the variant generator, 1 for other searchers,
    which learn from each result before suggesting the next)."""
    given = os.environ.get("TUNE_MAX_PENDING_TRIALS_PG", "auto")
    if given != "auto":
        try:
            return max(1, int(given))
        except ValueError:
            raise TuneError(f"TUNE_MAX_PENDING_TRIALS_PG={given!r}: give a number or 'auto'"
                            ) from None
    from sluice.libs.tune.search.basic_variant import BasicVariantGenerator

    return 200 if isinstance(searcher, BasicVariantGenerator) else 1


def _driver_node() -> str | None:
    """The driver's node on a cluster of more than one node; None on one machine."""
    import sluice

    if len(sluice.nodes()) <= 1:
        return None
    return sluice.get_runtime_context().get_node_id()


def check_feasible(resources: dict[str, float], total: dict[str, float], what: str) -> None:
    """Raise a TuneError when ``resources`` exceed what the cluster has in all (a trial
    asking for them could never start)."""
    short = sorted(k for k, v in resources.items() if v > total.get(k, 0.0) + 1e-9)
    if short:
        have = {k: total.get(k, 0.0) for k in short}
        raise TuneError(
            f"{what} asks for {resources}, but the cluster has at most {have}: no trial could "
            f"ever start. Ask for less with tune.with_resources(trainable, {{...}}), or add "
            f"nodes (or start sluice with more, e.g. sluice.init(num_gpus=1))")


def _checkpoint_number(path: str) -> int | None:
    name = os.path.basename(path.rstrip("/"))
    if name.startswith("checkpoint_"):
        try:
            return int(name[len("checkpoint_"):])
        except ValueError:
            return None
    return None
