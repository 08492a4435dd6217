"""sluice.train: a training loop run on a gang of ranks, with Ray Train's API.

``from sluice import train`` (or ``import sluice.train``); PyTorch's trainer is in
``sluice.train.torch``. See the README's "Distributed training" section.
"""

from sluice.libs.train import dashboard_page  # noqa: F401  (registers the dashboard page)
from sluice.libs.train.config import (
    CheckpointConfig,
    DataConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)
from sluice.libs.train.errors import ControllerError, TrainingFailedError, WorkerGroupError
from sluice.libs.train.result import Result
from sluice.libs.train.session import (
    TrainContext,
    get_checkpoint,
    get_context,
    get_dataset_shard,
    report,
)
from sluice.libs.train.trainer import DataParallelTrainer
from sluice.libs.tune.checkpoint import Checkpoint

__all__ = ["Checkpoint", "CheckpointConfig", "ControllerError", "DataConfig", "DataParallelTrainer",
           "FailureConfig", "Result", "RunConfig", "ScalingConfig", "TrainContext",
           "TrainingFailedError", "WorkerGroupError", "get_checkpoint", "get_context",
           "get_dataset_shard", "report"]
