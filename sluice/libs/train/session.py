"""What a training loop calls on its rank: :func:`report`, :func:`get_checkpoint`,
:func:`get_context` and :func:`get_dataset_shard` (Ray Train's ``ray.train.report`` & co.).

The rank's actor (:class:`~sluice.libs.train.worker.TrainWorker`) sets the process's
:class:`TrainSession` before it runs the loop; outside a training run these raise, saying
where they work. ``report`` is a barrier across the ranks: it returns once every rank made
the same report and the driver recorded it (and persisted its checkpoint).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint, pack


@dataclass
class TrainContext:
    """Where this rank stands in the run, as ``train.get_context()`` gives it."""

    world_rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    experiment_name: str
    trial_name: str | None = None
    trial_id: str | None = None

    def get_world_rank(self) -> int:
        return self.world_rank

    def get_world_size(self) -> int:
        return self.world_size

    def get_local_rank(self) -> int:
        return self.local_rank

    def get_local_world_size(self) -> int:
        return self.local_world_size

    def get_node_rank(self) -> int:
        return self.node_rank

    def get_experiment_name(self) -> str:
        return self.experiment_name

    def get_trial_name(self) -> str | None:
        return self.trial_name

    def get_trial_id(self) -> str | None:
        return self.trial_id


class StopTraining(BaseException):  # noqa: N818 - not an error: the run is being torn down
    """Raised inside ``train.report`` of a rank whose gang is stopping."""


class TrainSession:
    """One rank's session: hands each report to the actor's event loop (the driver takes it
    with ``next()``) and waits there until the driver lets every rank go on."""

    def __init__(self, context: TrainContext, checkpoint: Checkpoint | None,
                 shards: dict[str, Any], remote: bool, loop: asyncio.AbstractEventLoop,
                 use_gpu: bool = False):
        self.context = context
        self.use_gpu = use_gpu  # ScalingConfig(use_gpu=True): the rank holds a GPU
        self.checkpoint = checkpoint
        self.shards = shards
        self.remote = remote  # on another node than the driver's: checkpoints travel as data
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.go = threading.Semaphore(0)
        self.waiting = False  # the loop waits in report() for the driver
        self.stopping = False
        self.reports = 0

    def put(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to the actor's loop (from the training loop's thread)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        if self.stopping:
            raise StopTraining()
        if not isinstance(metrics, dict):
            raise TypeError(f"train.report(metrics={metrics!r}): give a dict of metrics")
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"train.report(checkpoint={checkpoint!r}): give a "
                            f"train.Checkpoint (Checkpoint.from_directory(path)) or None")
        self.reports += 1
        path = checkpoint.path if checkpoint is not None else None
        self.put({"kind": "report", "metrics": dict(metrics), "checkpoint": path,
                  "checkpoint_data": pack(path) if path is not None and self.remote else None,
                  "index": self.reports})
        self.go.acquire()  # the driver recorded every rank's report
        if self.stopping:
            raise StopTraining()

    async def next(self) -> dict[str, Any]:
        """Let the rank run to its next event (a report, its end or its error)."""
        if self.waiting:
            self.waiting = False
            self.go.release()
        event = await self.events.get()
        self.waiting = event["kind"] == "report"
        return event


_session: TrainSession | None = None


def set_session(session: TrainSession | None) -> None:
    global _session
    _session = session


def current_session() -> TrainSession | None:
    """The rank's session, or None outside a training loop."""
    return _session


def _current(what: str) -> TrainSession:
    if _session is None:
        raise RuntimeError(f"train.{what}() works only inside a training loop run by a "
                           f"trainer's fit() (TorchTrainer(train_loop_per_worker=...).fit())")
    return _session


def report(metrics: dict[str, Any], checkpoint: Checkpoint | None = None,
           checkpoint_dir_name: str | None = None) -> None:
    """Report ``metrics`` (rank 0's are kept) and, optionally, a checkpoint directory
    (every rank's files are merged into one persisted checkpoint). A barrier: it returns
    once every rank reported."""
    _current("report").report(metrics, checkpoint)


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the latest persisted one after a restart, else None."""
    return _current("get_checkpoint").checkpoint


def get_context() -> TrainContext:
    """This rank's place in the run (world and local rank and size, node rank, names)."""
    return _current("get_context").context


def get_dataset_shard(dataset_name: str | None = None) -> Any:
    """This rank's shard of the trainer's ``datasets[dataset_name]``."""
    shards = _current("get_dataset_shard").shards
    if dataset_name is None and len(shards) == 1:
        return next(iter(shards.values()))
    if dataset_name not in shards:
        raise KeyError(f"train.get_dataset_shard({dataset_name!r}): the trainer has no dataset "
                       f"of that name; its datasets are {sorted(shards) or 'none'} "
                       f"(TorchTrainer(datasets={{name: dataset}}))")
    return shards[dataset_name]
