"""``TorchTrainer``: a PyTorch training loop on a gang of ranks joined by
``torch.distributed`` (gloo on CPUs, nccl on GPUs, unless ``TorchConfig`` says)."""

from __future__ import annotations

from typing import Any, Callable

from sluice.libs.train.config import ScalingConfig
from sluice.libs.train.torch.config import TorchConfig
from sluice.libs.train.trainer import DataParallelTrainer
from sluice.libs.tune.checkpoint import Checkpoint
from sluice.libs.tune.config import RunConfig


class TorchTrainer(DataParallelTrainer):
    """Ray Train's ``TorchTrainer``: ``fit()`` runs ``train_loop_per_worker(config)`` on
    every rank of ``scaling_config``, in one process group (``torch_config``)."""

    def __init__(self, train_loop_per_worker: Callable, *,
                 train_loop_config: dict[str, Any] | None = None,
                 torch_config: TorchConfig | None = None,
                 scaling_config: ScalingConfig | None = None, run_config: RunConfig | None = None,
                 datasets: dict[str, Any] | None = None, dataset_config: Any = None,
                 metadata: dict[str, Any] | None = None,
                 resume_from_checkpoint: Checkpoint | None = None):
        if torch_config is not None and not isinstance(torch_config, TorchConfig):
            raise TypeError(f"torch_config={torch_config!r}: give a "
                            f"sluice.train.torch.TorchConfig(backend=...)")
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config,
                         backend_config=torch_config or TorchConfig(),
                         scaling_config=scaling_config, run_config=run_config,
                         datasets=datasets, dataset_config=dataset_config, metadata=metadata,
                         resume_from_checkpoint=resume_from_checkpoint)
