"""``DataParallelTrainer``: a training loop run on a gang of ranks (Ray Train's trainer).

The run is a graph template: one :class:`~sluice.libs.train.worker.TrainWorker` actor node
per rank (its resources from ``ScalingConfig``) and its ``start`` call. It compiles to a
Plan like any graph (``explain()``/``visualize()`` show the ranks and what each holds);
:class:`~sluice.libs.actor_factory.ActorFactoryHooks` runs that Plan so that each rank's
actor stage becomes the factory the :class:`~sluice.libs.train.controller.TrainController`
makes that rank's actor with, in the attempt's placement group, every attempt.
"""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import os
from typing import Any, Callable

from sluice.compiler.runner import run_plan
from sluice.libs.actor_factory import ActorFactoryHooks
from sluice.libs.train import dashboard_page
from sluice.libs.train.config import DataConfig, ScalingConfig, bundles
from sluice.libs.train.controller import TrainController
from sluice.libs.train.result import Result
from sluice.libs.tune.checkpoint import Checkpoint
from sluice.libs.tune.config import RunConfig


def dataset_source(name: str) -> str:
    """A template node standing for the dataset ``name`` (drawn, not run: the run's
    controller splits the dataset itself, afresh for each attempt)."""
    return name


def dataset_shard(source: str, rank: int, n: int) -> tuple[str, int, int]:
    """A template node standing for rank ``rank``'s shard of ``n`` of a dataset (its
    ``streaming_split(n, equal=True)`` iterator; drawn, not run)."""
    return source, rank, n


def _check_loop(loop: Any) -> None:
    if not callable(loop):
        raise TypeError(f"train_loop_per_worker={loop!r} is not callable; give a function "
                        f"def train_loop(config): ... (or one taking no argument)")
    try:
        params = list(inspect.signature(loop).parameters.values())
    except (TypeError, ValueError):
        return
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    name = getattr(loop, "__name__", repr(loop))
    if len(required) > 1:
        raise ValueError(f"train_loop_per_worker {name}{inspect.signature(loop)} takes "
                         f"{len(required)} arguments; it must take one (train_loop_config) "
                         f"or none")


def _check_feasible(scaling: ScalingConfig, total: dict[str, float]) -> None:
    """A clear error at fit() when the gang could never be placed (not a wait for ever)."""
    need = scaling.total_resources
    short = sorted(k for k, v in need.items() if v > total.get(k, 0.0) + 1e-9)
    if short:
        have = {k: total.get(k, 0.0) for k in short}
        raise ValueError(
            f"ScalingConfig(num_workers={scaling.num_workers}) asks for "
            f"{scaling.worker_resources()} per rank, {need} in all, but the cluster has "
            f"{have}: the gang could never start. Use fewer workers or less per worker "
            f"(resources_per_worker=...), or add nodes (or start sluice with more, e.g. "
            f"sluice.init(num_cpus=...))")


class DataParallelTrainer:
    """Runs ``train_loop_per_worker`` on ``scaling_config.num_workers`` ranks with
    ``backend_config`` (which joins them into a process group); ``fit()`` returns a
    :class:`Result` or raises :class:`~sluice.libs.train.errors.TrainingFailedError`."""

    def __init__(self, train_loop_per_worker: Callable, *,
                 train_loop_config: dict[str, Any] | None = None, backend_config: Any = None,
                 scaling_config: ScalingConfig | None = None, run_config: RunConfig | None = None,
                 datasets: dict[str, Any] | None = None, dataset_config: Any = None,
                 metadata: dict[str, Any] | None = None,
                 resume_from_checkpoint: Checkpoint | None = None):
        _check_loop(train_loop_per_worker)
        if train_loop_config is not None and not isinstance(train_loop_config, dict):
            raise TypeError(f"train_loop_config={train_loop_config!r}: give a dict (it is "
                            f"passed to train_loop_per_worker on every rank)")
        if scaling_config is not None and not isinstance(scaling_config, ScalingConfig):
            raise TypeError(f"scaling_config={scaling_config!r}: give a "
                            f"sluice.train.ScalingConfig(num_workers=...)")
        for name, dataset in (datasets or {}).items():
            if not hasattr(dataset, "streaming_split"):
                raise TypeError(f"datasets[{name!r}]={dataset!r}: give a sluice.data Dataset "
                                f"(e.g. sluice.data.read_parquet(...))")
        if dataset_config is not None and not isinstance(dataset_config, DataConfig):
            raise TypeError(f"dataset_config={dataset_config!r}: give a "
                            f"sluice.train.DataConfig(datasets_to_split=...)")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.backend_config = backend_config
        self.scaling_config = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.datasets = dict(datasets or {})
        self.dataset_config = dataset_config or DataConfig()
        self.metadata = dict(metadata or {})
        self.resume_from_checkpoint = resume_from_checkpoint
        self.loop_name = getattr(train_loop_per_worker, "__name__", "train")
        self.name = (self.run_config.name
                     or f"{type(self).__name__}_{dt.datetime.now():%Y-%m-%d_%H-%M-%S}")
        self.path = os.path.join(self.run_config.experiment_storage(), self.name)
        self.controller: TrainController | None = None

    # -- the template ---------------------------------------------------------------------
    def template(self) -> Any:
        """The run's graph: one rank actor per worker, each with its start call, which
        reads each dataset (a ``streaming_split`` shard of it, or all of it)."""
        import sluice
        from sluice.libs.train.worker import TrainWorker

        resources = self.scaling_config.worker_resources()
        options: dict[str, Any] = {"num_cpus": resources.get("CPU", 0.0),
                                   "num_gpus": resources.get("GPU", 0.0)}
        custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
        if custom:
            options["resources"] = custom
        worker = sluice.remote(TrainWorker).options(name=None, **options)
        n = self.scaling_config.num_workers
        with sluice.InputNode() as spec:
            sources = {name: sluice.remote(dataset_source)
                       .options(name=f"dataset {name!r}", num_cpus=0).bind(name)
                       for name in self.datasets}
            starts = []
            for rank in range(n):
                shards = {name: (sluice.remote(dataset_shard)
                                 .options(name=f"{name} shard {rank}/{n}", num_cpus=0)
                                 .bind(source, rank, n)
                                 if self.dataset_config.splits(name) else source)
                          for name, source in sources.items()}
                starts.append(worker.bind(self.train_loop_per_worker, self.backend_config, rank)
                              .start.bind(spec, shards))
        return sluice.MultiOutputNode(starts)

    def explain(self) -> str:
        """The gang (its ranks, what each holds, how they are placed, the backend), then
        the template's Plan."""
        scaling = self.scaling_config
        backend = type(self.backend_config).__name__ if self.backend_config is not None \
            else "none"
        lines = [f"== {type(self).__name__} run {self.name!r} at {self.path} ==",
                 f"loop: {self.loop_name}; {scaling.num_workers} rank(s), each holding "
                 f"{scaling.worker_resources()}, placed {scaling.placement_strategy}; "
                 f"backend: {backend}"]
        for name, dataset in self.datasets.items():
            how = (f"split over the {scaling.num_workers} rank(s) (streaming_split, equal "
                   f"rows)" if self.dataset_config.splits(name) else "whole to every rank")
            lines.append(f"dataset {name!r} -> {how}: {dataset!r}")
        return "\n".join(lines) + "\n" + self.template().compile().explain()

    def visualize(self, path: str | None = None) -> Any:
        """The template's Plan drawn (graphviz): a node per rank, an edge from each dataset
        (through its shard when split) into each rank."""
        scaling = self.scaling_config
        graph = self.template().compile().visualize()
        graph.attr(label=f"{type(self).__name__}: {scaling.num_workers} rank(s), "
                         f"{scaling.placement_strategy}", labelloc="t")
        if path is not None:
            root, ext = os.path.splitext(path)
            graph.render(root, format=ext.lstrip(".") or "svg", cleanup=True)
        return graph

    # -- running --------------------------------------------------------------------------
    def _shards(self) -> tuple[list[dict[str, Any]], list[Any]]:
        """Each rank's datasets for one attempt (a fresh split each time: a restarted gang
        reads from the start of an epoch), and the split coordinators to stop after it.

        A split dataset is read by tasks while the ranks train: where the gang would hold
        every CPU of the cluster (two ranks on two cores), no task could run, so the dataset
        is materialized first (its blocks then stream to the ranks from the store)."""
        import sluice

        n = self.scaling_config.num_workers
        shards: list[dict[str, Any]] = [{} for _ in range(n)]
        coordinators = []
        spare = float(sluice.cluster_resources().get("CPU", 0.0)) - \
            self.scaling_config.total_resources.get("CPU", 0.0)
        for name, dataset in self.datasets.items():
            if self.dataset_config.splits(name):
                if spare < 1.0:
                    dataset = dataset.materialize()
                iterators = dataset.streaming_split(n, equal=True)
                coordinators.append(iterators[0]._coordinator)
                for rank, iterator in enumerate(iterators):
                    shards[rank][name] = iterator
            else:
                for rank in range(n):
                    shards[rank][name] = dataset
        return shards, coordinators

    def fit(self) -> Result:
        """Run the loop on every rank until it returns; the run's :class:`Result`."""
        return self._fit()

    def _fit(self, on_report: Callable[[dict[str, Any], Checkpoint | None], None] | None = None,
             trial: dict[str, Any] | None = None) -> Result:
        import sluice

        if not sluice.is_initialized():
            sluice.init()
        scaling = self.scaling_config
        _check_feasible(scaling, {k: float(v) for k, v in sluice.cluster_resources().items()})
        hooks = ActorFactoryHooks()
        run_plan(self.template().compile(), hooks, ({},))
        factories = [make for _, make in sorted(hooks.factories, key=lambda f: f[0][2])]
        run = self.run_config
        controller = TrainController(
            factories=factories, scaling=scaling, run_path=self.path,
            experiment_name=self.name, config=self.train_loop_config,
            checkpoint_config=run.checkpoint_config, failure_config=run.failure_config,
            resume_from=self.resume_from_checkpoint, make_shards=self._shards,
            trial=trial, on_report=on_report)
        self.controller = controller
        dashboard_page.note_run(self.name, self.path, controller)
        controller.run()
        return Result(metrics=controller.history[-1] if controller.history else {},
                      checkpoint=controller.latest, path=self.path,
                      best_checkpoints=[(Checkpoint(p), m) for p, m in controller.kept],
                      metrics_history=list(controller.history))

    # -- as a Tuner's trainable -----------------------------------------------------------
    def as_trainable(self) -> Any:
        """This trainer as a sluice.tune function trainable: each trial runs a gang with
        ``config["train_loop_config"]`` over this trainer's (and ``config["scaling_config"]``
        when given), every round reported to the trial, resuming from the trial's
        checkpoint. The trial's own actor holds nothing: the gang's ranks hold the
        resources, and each trial counts them, so that only as many trials run at once as
        gangs fit (the others stay PENDING, as with Ray's placement group per trial)."""
        from sluice.libs.tune import session as tune_session
        from sluice.libs.tune.trainable import reserved_by_gang

        base = self

        def train_trainable(config: dict[str, Any]) -> None:
            context = tune_session.get_context()
            loop_config = {**(base.train_loop_config or {}),
                           **dict(config.get("train_loop_config") or {})}
            trainer = copy.copy(base)
            trainer.train_loop_config = loop_config
            trainer.scaling_config = config.get("scaling_config") or base.scaling_config
            trainer.name = "train"
            trainer.path = os.path.join(context.get_trial_dir(), "train")
            trainer.resume_from_checkpoint = (tune_session.get_checkpoint()
                                              or base.resume_from_checkpoint)

            def report(metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
                tune_session.report(metrics, checkpoint=checkpoint)

            trainer._fit(on_report=report, trial={"trial_id": context.get_trial_id(),
                                                  "trial_name": context.get_trial_name()})

        train_trainable.__name__ = type(base).__name__
        train_trainable.__qualname__ = type(base).__name__
        def gang(config: dict[str, Any]) -> dict[str, float]:
            scaling = config.get("scaling_config") or base.scaling_config
            total: dict[str, float] = {}
            for bundle in bundles(scaling):
                for key, value in bundle.items():
                    total[key] = total.get(key, 0.0) + value
            return total

        return reserved_by_gang(train_trainable, gang)
