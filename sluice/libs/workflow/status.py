"""The states a durable workflow run and each of its steps can be in.

Both enums are ``str`` subclasses whose values equal their names, so they are
stored as plain text in the workflow database and compare equal to it:

>>> WorkflowStatus("RESUMABLE") is WorkflowStatus.RESUMABLE
True
>>> StepStatus.SUCCESSFUL == "SUCCESSFUL"
True
"""

from __future__ import annotations

import enum

__all__ = ["StepStatus", "WorkflowStatus"]


class WorkflowStatus(str, enum.Enum):
    """Where a workflow run stands.

    ``RUNNING``: a live driver process is executing it. ``SUCCESSFUL``: its output
    step finished. ``FAILED``: a step raised and its retries ran out. ``RESUMABLE``:
    it stopped before finishing (its driver died, or it was interrupted) and
    ``resume`` continues it from its checkpoints. ``CANCELED``: a user canceled it.
    """

    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    RESUMABLE = "RESUMABLE"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value


class StepStatus(str, enum.Enum):
    """Where one step of a workflow run stands; ``SUCCESSFUL`` steps have a checkpoint."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value
