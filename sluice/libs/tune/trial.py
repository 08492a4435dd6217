"""A trial: one config of an experiment and where it stands (plain data the controller,
the schedulers and the searchers share)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"
"""A trial's statuses, Ray Tune's names."""


@dataclass(eq=False)
class Trial:
    """One trial: its id, config and status; its last result and latest checkpoint."""

    PENDING = PENDING
    RUNNING = RUNNING
    PAUSED = PAUSED
    TERMINATED = TERMINATED
    ERROR = ERROR

    trial_id: str
    config: dict[str, Any]
    trainable_name: str = "trainable"
    experiment_tag: str = ""
    evaluated_params: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=lambda: {"CPU": 1.0})
    status: str = PENDING
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # the latest checkpoint's folder (a resumed trial's start)
    checkpoint_index: int = 0  # the number the trial's next checkpoint folder gets
    error: str | None = None
    num_failures: int = 0
    path: str = ""  # the trial's folder
    name: str = ""
    index: int = 0  # the trial's number in the experiment (0, 1, ...)
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.trainable_name}_{self.trial_id}"

    def is_finished(self) -> bool:
        """Terminated or errored: it will not run again."""
        return self.status in (TERMINATED, ERROR)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Trial({self.name}, {self.status})"
