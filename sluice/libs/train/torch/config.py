"""``TorchConfig``: how the ranks join one ``torch.distributed`` process group."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from sluice.libs.train.session import TrainContext


def import_torch() -> Any:
    """torch, or an ImportError naming the extra that installs it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError("sluice.train.torch needs PyTorch: pip install 'sluice[train]' "
                          "(or pip install torch)") from exc
    return torch


@dataclass
class TorchConfig:
    """``backend``: ``"gloo"``, ``"nccl"``, or None for nccl when the ranks use GPUs and
    gloo otherwise; ``init_method``: ``"env"`` (``MASTER_ADDR``/``MASTER_PORT``) or
    ``"tcp"``; ``timeout_s``: the process group's timeout for a collective (sluice notices a
    dead rank itself, at once)."""

    backend: str | None = None
    init_method: str = "env"
    timeout_s: int = 1800

    def __post_init__(self) -> None:
        if self.backend not in (None, "gloo", "nccl"):
            raise ValueError(f"TorchConfig(backend={self.backend!r}): give 'gloo', 'nccl', or "
                             f"None (nccl with GPUs, gloo without)")
        if self.init_method not in ("env", "tcp"):
            raise ValueError(f"TorchConfig(init_method={self.init_method!r}): give 'env' or "
                             f"'tcp'")

    def backend_for(self, use_gpu: bool) -> str:
        return self.backend or ("nccl" if use_gpu else "gloo")

    # -- on each rank ---------------------------------------------------------------------
    def on_start(self, context: TrainContext, use_gpu: bool = False) -> None:
        """Join the process group (``torch.distributed.init_process_group``); with GPUs,
        make the rank's GPU the current device."""
        torch = import_torch()
        dist = torch.distributed
        backend = self.backend_for(use_gpu)
        if use_gpu and torch.cuda.is_available():
            torch.cuda.set_device(_local_device_index(torch))
        address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        init = "env://" if self.init_method == "env" else f"tcp://{address}"
        dist.init_process_group(backend=backend, init_method=init,
                                rank=context.world_rank, world_size=context.world_size,
                                timeout=dt.timedelta(seconds=self.timeout_s))

    def on_shutdown(self, context: TrainContext) -> None:
        """Leave the process group."""
        torch = import_torch()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _local_device_index(torch: Any) -> int:
    """This rank's GPU among those visible to it (each rank sees its own: index 0)."""
    return 0 if torch.cuda.device_count() <= 1 else int(os.environ.get("LOCAL_RANK", "0")) % \
        torch.cuda.device_count()
