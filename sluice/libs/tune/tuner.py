"""``Tuner``: an experiment as a graph template, run by the controller loop.

The template is one ``.bind()`` graph: a trial-actor node (:class:`TrialRunner` of the
trainable, with one trial's resources) and its ``start`` call on a trial's spec. It
compiles to a Plan like any graph (``explain()``/``visualize()`` show it with the
searcher and the scheduler); :class:`~sluice.libs.actor_factory.ActorFactoryHooks` runs that Plan with the Plan runner so
that its actor stage becomes the factory of the experiment's trial actors, which the
:class:`~sluice.libs.tune.controller.TuneController` starts, reuses and stops.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
from typing import Any

import cloudpickle

from sluice.compiler.runner import run_plan
from sluice.libs.actor_factory import ActorFactoryHooks
from sluice.libs.tune.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from sluice.libs.tune.controller import TuneController, TuneError, check_feasible
from sluice.libs.tune.experiment_db import ExperimentDB, has_experiment
from sluice.libs.tune import dashboard_page
from sluice.libs.tune.progress import make_progress
from sluice.libs.tune.result_grid import ResultGrid
from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler
from sluice.libs.tune.search.basic_variant import BasicVariantGenerator
from sluice.libs.tune.search.searcher import Searcher
from sluice.libs.tune.trainable import (
    actor_resources,
    check_trainable,
    is_class_trainable,
    parameters_of,
    resources_of,
    trainable_name,
)
from sluice.libs.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial


class Tuner:
    """Tune ``trainable`` over ``param_space`` (Ray Tune's ``Tuner``)."""

    def __init__(self, trainable: Any = None, *, param_space: dict[str, Any] | None = None,
                 tune_config: TuneConfig | None = None, run_config: RunConfig | None = None,
                 _restored: dict[str, Any] | None = None):
        if hasattr(trainable, "as_trainable"):  # a sluice.train trainer: each trial a gang
            trainable = trainable.as_trainable()
        check_trainable(trainable)
        if param_space is not None and not isinstance(param_space, dict):
            raise TypeError(f"Tuner(param_space={param_space!r}): give a dict of parameters, "
                            f"e.g. {{'lr': tune.loguniform(1e-4, 1e-1)}}")
        self.trainable = trainable
        self.param_space = dict(param_space or {})
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self._restored = _restored
        self._results: ResultGrid | None = None
        name = self.run_config.name or _default_name(trainable)
        self.experiment_name = name
        self.experiment_path = os.path.join(self.run_config.experiment_storage(), name)
        self.searcher = self._searcher()
        self.scheduler = self.tune_config.scheduler or FIFOScheduler()
        if not isinstance(self.scheduler, TrialScheduler):
            raise TypeError(f"TuneConfig(scheduler={self.scheduler!r}): give a scheduler from "
                            f"sluice.tune.schedulers (or a TrialScheduler subclass)")
        self._set_search_properties()

    # -- set-up ---------------------------------------------------------------------------
    def _searcher(self) -> Searcher:
        given = self.tune_config.search_alg
        if given is None:
            return BasicVariantGenerator()
        if not isinstance(given, Searcher):
            raise TypeError(f"TuneConfig(search_alg={given!r}): give a searcher from "
                            f"sluice.tune.search (or a Searcher subclass)")
        return given

    def _set_search_properties(self) -> None:
        cfg = self.tune_config
        metric, mode = cfg.metric, cfg.mode
        if not self.searcher.set_search_properties(metric, mode, self.param_space,
                                                   num_samples=cfg.num_samples):
            raise ValueError(f"{type(self.searcher).__name__} already has a search space: "
                             f"give param_space to the searcher or to the Tuner, not both")
        if not self.scheduler.set_search_properties(metric, mode):
            raise ValueError(f"{type(self.scheduler).__name__} has metric="
                             f"{self.scheduler.metric!r}, mode={self.scheduler.mode!r}, which "
                             f"differ from TuneConfig(metric={metric!r}, mode={mode!r}); give "
                             f"them in one place")

    def template(self) -> Any:
        """The experiment's graph: a trial actor of the trainable and its start call."""
        import sluice
        from sluice.libs.tune.runner import TrialRunner

        checkpoint_config = self.run_config.checkpoint_config or CheckpointConfig()
        resources = self.trial_resources()
        options: dict[str, Any] = {"num_cpus": resources.get("CPU", 0.0),
                                   "num_gpus": resources.get("GPU", 0.0)}
        custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
        if custom:
            options["resources"] = custom
        runner = sluice.remote(TrialRunner).options(name=None, **options)
        at_end = checkpoint_config.checkpoint_at_end
        if at_end is None:
            at_end = is_class_trainable(self.trainable)
        actor = runner.bind(self.trainable, parameters_of(self.trainable),
                            checkpoint_config.checkpoint_frequency, bool(at_end))
        with sluice.InputNode() as spec:
            call = actor.start.bind(spec)
        return call

    def trial_resources(self) -> dict[str, float]:
        """What a trial's actor holds, as the template shows it (resources given per config
        by a function are known only per trial: then one CPU is shown)."""
        try:
            return resources_of(self.trainable, {})
        except Exception:  # noqa: BLE001 - a per-config function that needs the config
            return {"CPU": 1.0}

    def explain(self) -> str:
        """The experiment: its trial actors and their resources, the searcher, the scheduler,
        then the template's Plan."""
        cfg = self.tune_config
        resources = self.trial_resources()
        held = actor_resources(self.trainable, resources)
        lines = [f"== Tune experiment {self.experiment_name!r} at {self.experiment_path} ==",
                 f"trainable: {trainable_name(self.trainable)} "
                 f"({'class' if is_class_trainable(self.trainable) else 'function'}); "
                 + (f"each trial actor holds {resources}" if held == resources else
                    f"each trial counts {resources} (its gang's), its actor holds {held}")
                 + f"{' (reused across trials)' if cfg.reuse_actors else ''}",
                 f"searcher: {self.searcher.describe()}",
                 f"scheduler: {self.scheduler.describe()}",
                 f"metric: {cfg.metric!r}, mode: {cfg.mode!r}, num_samples: {cfg.num_samples}, "
                 f"max_concurrent_trials: {cfg.max_concurrent_trials}"]
        return "\n".join(lines) + "\n" + self.template().compile().explain()

    def visualize(self, path: str | None = None) -> Any:
        """The template's Plan drawn (graphviz), titled with the searcher and scheduler."""
        graph = self.template().compile().visualize()
        graph.attr(label=f"{self.searcher.describe()}\n{self.scheduler.describe()}",
                   labelloc="t")
        if path is not None:
            root, ext = os.path.splitext(path)
            graph.render(root, format=ext.lstrip(".") or "svg", cleanup=True)
        return graph

    # -- running --------------------------------------------------------------------------
    def fit(self) -> ResultGrid:
        """Run the experiment (or, after ``Tuner.restore``, the rest of it); its results."""
        import sluice

        if not sluice.is_initialized():
            sluice.init()
        db = ExperimentDB(self.experiment_path)
        try:
            state = self._restored or {}
            if not state:
                self._save_spec(db)
            total = {k: float(v) for k, v in sluice.cluster_resources().items()}
            check_feasible(self.trial_resources(), total,
                           f"each trial of {trainable_name(self.trainable)}")
            hooks = ActorFactoryHooks()
            run_plan(self.template().compile(), hooks, ({},))
            cfg, run = self.tune_config, self.run_config
            verbose = 2 if run.verbose is None else run.verbose
            controller = TuneController(
                db=db, experiment_name=self.experiment_name,
                experiment_path=self.experiment_path,
                trainable_name=trainable_name(self.trainable), param_space=self.param_space,
                searcher=self.searcher, scheduler=self.scheduler,
                make_actor=lambda counted: hooks.factory(actor_resources(self.trainable,
                                                                         counted)),
                resources_of=lambda config: resources_of(self.trainable, config),
                metric=cfg.metric, mode=cfg.mode, num_samples=cfg.num_samples,
                max_concurrent_trials=cfg.max_concurrent_trials,
                time_budget_s=cfg.time_budget_s, reuse_actors=cfg.reuse_actors, stop=run.stop,
                checkpoint_config=run.checkpoint_config or CheckpointConfig(),
                failure_config=run.failure_config or FailureConfig(),
                progress=make_progress(verbose, cfg.metric, cfg.mode),
                trial_name_creator=cfg.trial_name_creator,
                trial_dirname_creator=cfg.trial_dirname_creator,
                trials=state.get("trials"), next_index=state.get("next_index", 0),
                id_prefix=state.get("id_prefix"),
                searcher_finished=state.get("searcher_finished", False))
            self.controller = controller
            dashboard_page.note_experiment(self.experiment_name, self.experiment_path,
                                           controller)
            controller.run()
            self._results = ResultGrid(db, self.experiment_path, cfg.metric, cfg.mode)
            return self._results
        except BaseException:
            db.close()
            raise

    def get_results(self) -> ResultGrid:
        """The results of the last ``fit()`` (or of the experiment on disk)."""
        if self._results is None:
            if not has_experiment(self.experiment_path):
                raise RuntimeError("no results yet: call fit() first")
            db = ExperimentDB(self.experiment_path, create=False)
            self._results = ResultGrid(db, self.experiment_path, self.tune_config.metric,
                                       self.tune_config.mode)
        return self._results

    def _save_spec(self, db: ExperimentDB) -> None:
        spec = {"param_space": self.param_space, "tune_config": self.tune_config,
                "run_config": self.run_config, "name": self.experiment_name}
        try:
            blob = cloudpickle.dumps(spec)
        except Exception as exc:  # noqa: BLE001 - restore then needs them given again
            blob = None
            import logging

            logging.getLogger(__name__).warning(
                "the experiment's settings do not pickle (%s): Tuner.restore will need "
                "param_space given again", exc)
        db.set_meta("spec", blob)
        db.commit()

    # -- restoring ------------------------------------------------------------------------
    @classmethod
    def can_restore(cls, path: str | os.PathLike, storage_filesystem: Any = None) -> bool:
        """True when ``path`` holds an experiment ``Tuner.restore`` can resume."""
        return has_experiment(os.path.expanduser(os.fspath(path)))

    @classmethod
    def restore(cls, path: str | os.PathLike, trainable: Any, resume_unfinished: bool = True,
                resume_errored: bool = False, restart_errored: bool = False,
                param_space: dict[str, Any] | None = None,
                storage_filesystem: Any = None) -> Tuner:
        """A Tuner that resumes the experiment at ``path``: its unfinished trials continue
        from their latest checkpoints, finished ones are not run again; errored ones are
        resumed (``resume_errored``) or started over (``restart_errored``)."""
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not has_experiment(path):
            raise ValueError(f"Tuner.restore({path!r}): no experiment there (no "
                             f"experiment.db); give the folder Tuner.fit() wrote, "
                             f"storage_path/name")
        db = ExperimentDB(path, create=False)
        try:
            blob = db.meta("spec")
            spec = cloudpickle.loads(blob) if blob is not None else None
            if spec is None and param_space is None:
                raise ValueError(f"Tuner.restore({path!r}): the experiment's settings were not "
                                 f"saved (they did not pickle); pass param_space=...")
            spec = spec or {"tune_config": TuneConfig(), "run_config": RunConfig(),
                            "param_space": {}, "name": os.path.basename(path)}
            run_config = spec["run_config"]
            run_config.name = os.path.basename(path)
            run_config.storage_path = os.path.dirname(path)
            state = db.meta("state", {}) or {}
            trials = _resumed(db.trials(), resume_unfinished, resume_errored, restart_errored)
        finally:
            db.close()
        tuner = cls(trainable, param_space=param_space or spec["param_space"],
                    tune_config=spec["tune_config"], run_config=run_config,
                    _restored={"trials": trials, "next_index": state.get("next_index", 0),
                               "id_prefix": state.get("id_prefix"),
                               "searcher_finished": state.get("searcher_finished", False)})
        for name, obj, method in (("searcher", tuner.searcher, "set_state"),
                                  ("scheduler", tuner.scheduler, "restore_state")):
            blob = state.get(name)
            if blob is not None:
                getattr(obj, method)(pickle.loads(blob))
        return tuner


def _resumed(trials: list[Trial], resume_unfinished: bool, resume_errored: bool,
             restart_errored: bool) -> list[Trial]:
    """The trials of a restored experiment, with the statuses they resume with."""
    for trial in trials:
        if trial.status in (RUNNING, PENDING, PAUSED):
            trial.status = PENDING if resume_unfinished else TERMINATED
        elif trial.status == ERROR and restart_errored:
            trial.status, trial.error, trial.checkpoint = PENDING, None, None
            trial.last_result, trial.num_failures = {}, 0
        elif trial.status == ERROR and resume_errored:
            trial.status, trial.error, trial.num_failures = PENDING, None, 0
    return trials


def _default_name(trainable: Any) -> str:
    return f"{trainable_name(trainable)}_{dt.datetime.now():%Y-%m-%d_%H-%M-%S}"


__all__ = ["TuneError", "Tuner"]
