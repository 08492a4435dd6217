"""``Result``: what a training run left (Ray Train's ``Result``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint


@dataclass
class Result:
    """The last reported metrics (rank 0's), the latest checkpoint, the checkpoints kept
    with their metrics, the error (None: it finished), the run's folder, and every report."""

    metrics: dict[str, Any] | None
    checkpoint: Checkpoint | None
    error: BaseException | None = None
    path: str = ""
    best_checkpoints: list[tuple[Checkpoint, dict[str, Any]]] = field(default_factory=list)
    metrics_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics_dataframe(self) -> Any:
        """Every report's metrics (rank 0's), one row each, as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.metrics_history)

    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint | None:
        """The kept checkpoint with the best ``metric`` (``mode``: "min" or "max")."""
        if mode not in ("min", "max"):
            raise ValueError(f"get_best_checkpoint(mode={mode!r}): give 'min' or 'max'")
        scored = [(c, m[metric]) for c, m in self.best_checkpoints if metric in m]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[1])[0]

    def __repr__(self) -> str:
        return (f"Result(metrics={self.metrics!r}, path={self.path!r}, "
                f"checkpoint={self.checkpoint!r}, error={self.error!r})")
