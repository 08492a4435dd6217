"""What a trainable calls while it runs in a trial: :func:`report`, :func:`get_checkpoint`,
:func:`get_context` (Ray Tune's ``tune.report`` & co.).

A trial actor sets the process's :class:`TrialSession` before it runs a trainable; outside
a trial these functions raise, saying where they work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint


@dataclass
class TuneContext:
    """The running trial, as ``tune.get_context()`` gives it."""

    trial_id: str
    trial_name: str
    trial_dir: str
    experiment_name: str
    trial_resources: dict[str, float] = field(default_factory=dict)

    def get_trial_id(self) -> str:
        return self.trial_id

    def get_trial_name(self) -> str:
        return self.trial_name

    def get_trial_dir(self) -> str:
        return self.trial_dir

    def get_experiment_name(self) -> str:
        return self.experiment_name

    def get_trial_resources(self) -> dict[str, float]:
        return dict(self.trial_resources)

    def get_world_size(self) -> int:
        return 1

    def get_world_rank(self) -> int:
        return 0

    def get_local_rank(self) -> int:
        return 0


class TrialSession:
    """The link between a trainable and its trial actor (one per running trial)."""

    def __init__(self, context: TuneContext, checkpoint: Checkpoint | None):
        self.context = context
        self.checkpoint = checkpoint

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        raise NotImplementedError


_session: TrialSession | None = None


def set_session(session: TrialSession | None) -> None:
    """Make ``session`` the running trial's (None: no trial runs here)."""
    global _session
    _session = session


def _current(what: str) -> TrialSession:
    if _session is None:
        raise RuntimeError(f"tune.{what}() works only inside a trainable that Tuner.fit() runs; "
                           f"call it from the function or Trainable you give to Tuner")
    return _session


def report(metrics: dict[str, Any], *, checkpoint: Checkpoint | None = None) -> None:
    """Report one result of the running trial (and, optionally, a checkpoint of it).

    The trial pauses here until the scheduler decided to continue it; a trial the
    scheduler stops does not come back from this call.
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"tune.report() takes a dict of metrics, got {type(metrics).__name__}: "
                        f"tune.report({{'loss': 0.1}})")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"tune.report(checkpoint=...) takes a tune.Checkpoint, got "
                        f"{type(checkpoint).__name__}: Checkpoint.from_directory(path)")
    _current("report").report(metrics, checkpoint)


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint the trial resumes from (after a failure, a restore, or a PBT exploit);
    None when it starts fresh."""
    return _current("get_checkpoint").checkpoint


def get_context() -> TuneContext:
    """The running trial's id, name, folder and resources."""
    return _current("get_context").context
