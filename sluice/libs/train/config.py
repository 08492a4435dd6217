"""``ScalingConfig`` (how many ranks, what each holds, how they are placed) and the run's
settings, with Ray Train's names and defaults.

``RunConfig``, ``CheckpointConfig`` and ``FailureConfig`` are sluice.tune's classes (as in
Ray, where Train and Tune share them): a training run reads ``name``, ``storage_path``,
``checkpoint_config`` (``num_to_keep``, ``checkpoint_score_attribute``,
``checkpoint_score_order``) and ``failure_config`` (``max_failures``, -1 for no limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.libs.tune.config import CheckpointConfig, FailureConfig, RunConfig

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass
class ScalingConfig:
    """``num_workers`` ranks, each holding ``resources_per_worker`` (default one CPU, and
    one GPU with ``use_gpu``), placed together by ``placement_strategy``.

    ``trainer_resources`` is accepted for Ray programs and holds nothing: sluice's
    coordinator runs in the driver, not in an actor of its own.
    """

    trainer_resources: dict[str, float] | None = None
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: str = "PACK"
    accelerator_type: str | None = None

    def __post_init__(self) -> None:
        n = self.num_workers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"ScalingConfig(num_workers={n!r}): give the number of training "
                             f"ranks, an int of at least 1")
        if self.placement_strategy not in STRATEGIES:
            raise ValueError(f"ScalingConfig(placement_strategy={self.placement_strategy!r}): "
                             f"give one of {', '.join(STRATEGIES)}")
        if self.resources_per_worker is not None:
            if not isinstance(self.resources_per_worker, dict):
                raise ValueError(f"ScalingConfig(resources_per_worker="
                                 f"{self.resources_per_worker!r}): give a dict such as "
                                 f"{{'CPU': 2, 'GPU': 1}}")
            for name, amount in self.resources_per_worker.items():
                if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                    raise ValueError(f"ScalingConfig(resources_per_worker=...): {name}={amount!r}"
                                     f" must be a number >= 0")
        if self.accelerator_type is not None:
            raise ValueError(f"ScalingConfig(accelerator_type={self.accelerator_type!r}) is not "
                             f"supported: sluice does not label nodes by accelerator type")

    @property
    def num_cpus_per_worker(self) -> float:
        return self.worker_resources().get("CPU", 0.0)

    @property
    def num_gpus_per_worker(self) -> float:
        return self.worker_resources().get("GPU", 0.0)

    @property
    def total_resources(self) -> dict[str, float]:
        """What the whole gang holds."""
        return {k: v * self.num_workers for k, v in self.worker_resources().items()}

    def worker_resources(self) -> dict[str, float]:
        """What each rank's actor holds (Ray's defaults: one CPU, and one GPU with use_gpu)."""
        given = {k: float(v) for k, v in (self.resources_per_worker or {}).items()}
        given = {("CPU" if k.lower() == "cpu" else "GPU" if k.lower() == "gpu" else k): v
                 for k, v in given.items()}
        given.setdefault("CPU", 1.0)
        if self.use_gpu:
            given.setdefault("GPU", 1.0)
        return {k: v for k, v in given.items() if v > 0}


@dataclass
class DataConfig:
    """Which of the trainer's ``datasets`` are split across the ranks (``"all"``, or a list
    of names): a split one reaches each rank as its share, an iterator from
    ``streaming_split(num_workers, equal=True)``; another one whole, as the Dataset."""

    datasets_to_split: str | list[str] = "all"

    def __post_init__(self) -> None:
        if self.datasets_to_split != "all" and not isinstance(self.datasets_to_split, list):
            raise ValueError(f"DataConfig(datasets_to_split={self.datasets_to_split!r}): give "
                             f"'all' or a list of dataset names")

    def splits(self, name: str) -> bool:
        return self.datasets_to_split == "all" or name in self.datasets_to_split


def bundles(scaling: ScalingConfig) -> list[dict[str, Any]]:
    """The gang's placement-group bundles: one per rank."""
    return [scaling.worker_resources() for _ in range(scaling.num_workers)]


__all__ = ["CheckpointConfig", "DataConfig", "FailureConfig", "RunConfig", "ScalingConfig"]
