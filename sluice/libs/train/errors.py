"""The errors ``fit()`` raises when training fails for good (Ray Train's names)."""

from __future__ import annotations


class TrainingFailedError(RuntimeError):
    """Training failed: a :class:`WorkerGroupError` (ranks failed past ``max_failures``) or a
    :class:`ControllerError` (the run itself could not go on)."""


class WorkerGroupError(TrainingFailedError):
    """Ranks failed (raised or died) and ``FailureConfig(max_failures)`` was spent;
    ``worker_failures`` maps each failed rank to its exception."""

    def __init__(self, error_message: str, worker_failures: dict[int, BaseException]):
        super().__init__("Training failed due to worker errors:\n" + error_message)
        self._error_message = error_message
        self.worker_failures = worker_failures

    def __reduce__(self) -> tuple:
        return (type(self), (self._error_message, self.worker_failures))


class ControllerError(TrainingFailedError):
    """The run could not go on for a reason of its own (not a rank's error); the cause is
    ``controller_failure``."""

    def __init__(self, controller_failure: BaseException):
        super().__init__("Training failed due to controller error:\n" + str(controller_failure))
        self.controller_failure = controller_failure

    def __reduce__(self) -> tuple:
        return (type(self), (self.controller_failure,))
