"""The errors sluice raises.

Every error a user can catch derives from :class:`SluiceError`. A task's own
exception comes back from :func:`sluice.get` as a :class:`TaskError` that is
*also* an instance of the original exception type, so ``except ValueError``
keeps working around remote code, as Ray users expect.
"""

from __future__ import annotations

__all__ = [
    "SluiceError",
    "TaskError",
    "ActorError",
    "GetTimeoutError",
    "WorkerCrashedError",
    "ActorDiedError",
    "ObjectLostError",
    "TaskCancelledError",
    "InfeasibleResourceError",
    "UnschedulableError",
    "RuntimeEnvSetupError",
    "SerializationError",
    "UnsupportedOnBackendError",
    "InternalError",
    "RayError",
    "RayTaskError",
    "RayActorError",
    "TaskUnschedulableError",
    "ActorUnschedulableError",
    "RaySystemError",
    "AsyncioActorExit",
    "ActorUnavailableError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError",
    "PendingCallsLimitExceeded",
    "TaskPlacementGroupRemoved",
    "ActorPlacementGroupRemoved",
]


class SluiceError(Exception):
    """Base class of every error sluice raises."""


class TaskError(SluiceError):
    """A remote task or actor method raised; the original exception is ``cause``.

    The instance :func:`sluice.get` raises is built by :meth:`as_instanceof_cause`
    and subclasses both ``TaskError`` and the cause's type. Its message says what
    went wrong first (the cause's type and message, and its notes), then the
    remote traceback.
    """

    def __init__(self, function_name: str, traceback_text: str, cause: BaseException | None = None):
        super().__init__(function_name, traceback_text)
        self.function_name = function_name
        self.traceback_text = traceback_text
        self.cause = cause

    def __str__(self) -> str:
        trace = self.traceback_text.rstrip()
        head = self.headline()
        if head is None:
            return f"task {self.function_name} failed:\n{trace}"
        if not trace.startswith("Traceback"):  # no remote frame: the trace is the message again
            return f"task {self.function_name} failed: {head}"
        return f"task {self.function_name} failed: {head}\n\n{trace}"

    def headline(self) -> str | None:
        """What went wrong, without the traceback: the cause's type, message and notes
        (a nested task's failure: its own headline); None when the cause did not travel."""
        cause = self.cause
        if cause is None:
            return None
        if isinstance(cause, TaskError):
            inner = cause.headline()
            return None if inner is None else f"task {cause.function_name} failed: {inner}"
        notes = getattr(cause, "__notes__", None) or []
        try:
            message = str(cause)
        except Exception:  # a user's __str__ that raises: the traceback still says what happened
            return None
        return f"{type(cause).__name__}{': ' + message if message else ''}" + "".join(
            f"\n{note}" for note in notes if isinstance(note, str))

    def __reduce__(self):
        return (TaskError, (self.function_name, self.traceback_text, self.cause))

    def as_instanceof_cause(self) -> TaskError:
        """Return an error that is both a ``TaskError`` and of the cause's type.

        A task that failed because a task it waited for failed takes the type of the
        first cause in the chain, as in Ray: a ``ValueError`` raised two tasks down is
        still caught by ``except ValueError`` at the driver.
        """
        root = self.cause
        while isinstance(root, TaskError) and root.cause is not None:
            root = root.cause
        cause_type = type(root) if root is not None else None
        if cause_type is None or isinstance(root, TaskError) or not _can_subclass(cause_type):
            return self
        dual_type = _dual_types.get((type(self), cause_type))
        if dual_type is None:
            dual_type = type(
                f"{type(self).__name__}({cause_type.__name__})",
                (type(self), cause_type),
                {"__init__": _noop_init, "__str__": type(self).__str__, "__module__": __name__,
                 "__reduce__": _reduce_dual},
            )
            _dual_types[(type(self), cause_type)] = dual_type
        err = dual_type.__new__(dual_type)
        err.args = (self.function_name, self.traceback_text)
        err.function_name = self.function_name
        err.traceback_text = self.traceback_text
        err.cause = self.cause
        # Attributes the cause carried (e.g. OSError.errno) stay reachable.
        try:
            err.__dict__.update({k: v for k, v in vars(root).items() if k not in err.__dict__})
        except TypeError:
            pass
        return err


class ActorError(TaskError):
    """A base for actor failures that carry a remote traceback."""


class ActorDiedError(ActorError):
    """The actor's process is gone (killed, crashed past ``max_restarts``, or its
    constructor raised); calls on it cannot run."""

    def __init__(self, function_name: str = "actor", traceback_text: str = "the actor died",
                 cause: BaseException | None = None):
        super().__init__(function_name, traceback_text, cause)

    def __str__(self) -> str:
        return f"{self.function_name}: {self.traceback_text.rstrip()}"

    def __reduce__(self):
        return (ActorDiedError, (self.function_name, self.traceback_text, self.cause))


class AsyncioActorExit(SluiceError):
    """Raised by :func:`sluice.actor.exit_actor` inside an async actor's method (Ray's name):
    the actor ends once the call that raised it returns; never catch it in the method."""


class ActorUnavailableError(ActorError):
    """Ray's error for an actor that is unreachable for now but may come back. sluice never
    raises it: its actors are alive or dead (:class:`ActorDiedError`); it is here so that
    ``except ActorUnavailableError`` in a Ray program runs."""

    def __init__(self, error_message: str = "the actor is unavailable", actor_id: str | None = None):
        super().__init__("actor", error_message, None)
        self.error_message = error_message
        self.actor_id = actor_id

    def __str__(self) -> str:
        return f"the actor {self.actor_id} is unavailable: {self.error_message}"

    def __reduce__(self):
        return (ActorUnavailableError, (self.error_message, self.actor_id))


class GetTimeoutError(SluiceError, TimeoutError):
    """``get(..., timeout=)`` ran out of time before the objects were ready."""


class WorkerCrashedError(SluiceError):
    """The worker process running a task died, and the task's retries are spent."""


class ObjectLostError(SluiceError):
    """An object's value is gone (freed, or its spill file vanished) and cannot be rebuilt."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Ray's error for a fetch that found no copy of the object in time. sluice raises
    :class:`ObjectLostError` itself for objects it cannot find."""


class OwnerDiedError(ObjectLostError):
    """Ray's error for an object whose owner (the process that made its ref) died. sluice
    raises :class:`ObjectLostError` itself for the objects of a driver that left."""


class ObjectReconstructionFailedError(ObjectLostError):
    """An object lost with its node cannot be computed again: it was stored by ``put`` (or
    by an actor call), or an input it needs failed. The message says which."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    """Ray's error for an object whose rebuilding ran out of task retries. sluice raises
    the task's own error (``WorkerCrashedError``) when retries run out."""


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    """An object lost with its node cannot be computed again: the head no longer keeps the
    lineage (``max_lineage_bytes``) it needs. The message says how to keep more."""


class ObjectStoreFullError(SluiceError, OSError):
    """The object store has no room for an object (``/dev/shm`` is full), as Ray's. It is
    also an ``OSError`` (``errno.ENOSPC``): what sluice raised for this before."""


class OutOfDiskError(SluiceError, OSError):
    """The object store is full and spilling an object to disk failed (the spill
    directory's disk is full, or unwritable), as Ray's. Also an ``OSError`` with the cause's
    errno: what sluice raised for this before."""


class OutOfMemoryError(SluiceError):
    """Ray's error for a task or actor its memory monitor killed. sluice has no memory
    monitor and never raises it; a worker killed by the system's OOM killer raises
    :class:`WorkerCrashedError` (or :class:`ActorDiedError`)."""

    def __init__(self, message: str = "the node ran out of memory"):
        super().__init__(message)
        self.message = message


class NodeDiedError(SluiceError):
    """Ray's error for a node that died. sluice raises :class:`WorkerCrashedError`,
    :class:`ActorDiedError` or :class:`ObjectLostError` for what was on a dead node."""


class TaskCancelledError(SluiceError):
    """The task was cancelled with :func:`sluice.cancel` before it finished."""


class PendingCallsLimitExceeded(SluiceError):
    """Ray's error for a call past an actor's ``max_pending_calls``. sluice takes no
    ``max_pending_calls`` (``.options`` refuses it) and never raises it."""


class InfeasibleResourceError(SluiceError, ValueError):
    """A task or actor asks for resources that no node of the cluster has."""


class UnschedulableError(SluiceError, ValueError):
    """A task or actor is pinned (``scheduling_strategy`` with a hard node affinity) to a
    node that is not, or is no longer, part of the runtime, so it can never run."""


class TaskPlacementGroupRemoved(UnschedulableError):
    """The task's placement group was removed (``remove_placement_group``): the task was
    stopped, or never runs. An :class:`UnschedulableError`, as sluice raised before."""


class ActorPlacementGroupRemoved(UnschedulableError):
    """The actor's placement group was removed (``remove_placement_group``): the actor was
    stopped, or never starts. An :class:`UnschedulableError`, as sluice raised before."""


class RuntimeEnvSetupError(SluiceError):
    """A task's or actor's ``runtime_env`` cannot be set up (an unknown key, a missing
    ``working_dir``, a package past the size limit, ...): the message names the cause.
    Raised at ``get`` of the task's results (or of the actor's calls), as in Ray."""


class SerializationError(SluiceError, TypeError):
    """A value cannot be pickled to travel to a worker or into the store."""


class UnsupportedOnBackendError(SluiceError, NotImplementedError):
    """The current backend cannot do what was asked, which other backends do.

    Raised instead of doing something else; the message names the backend, the
    operation or option, and what to use instead. It is a ``NotImplementedError``
    (not a ``ValueError``): the request is valid sluice and runs on the local and
    cluster backends; this backend lacks it, so portable code catches
    ``NotImplementedError`` and falls back.

    On the ``dask`` backend (``sluice.init(backend="dask")``) it is raised for:

    - an actor with ``max_restarts`` > 0: Dask actors never restart;
    - a task whose ``max_retries`` is above the Dask scheduler's
      ``distributed.scheduler.allowed-failures`` (Dask reruns a task whose worker
      died at most that many times, for all tasks alike), or below it when the
      scheduler runs no functions for clients (``run_on_scheduler`` fails), so a
      task cannot count its crashes;
    - ``cancel(ref, force=True)`` of a task that is running: Dask can stop it only
      by restarting its worker, with every other task and object there;
    - an ObjectRef made inside a task used outside it, or a ref kept inside a
      ``put`` value or a task result read in a task: Dask ships a task only the
      refs of its own arguments.
    """


class InternalError(SluiceError):
    """A broken invariant inside sluice: a bug to report, never a user error."""


# Ray's names for the same errors, so a program that catches ``ray.exceptions.RayTaskError``
# runs unchanged with ``import sluice as ray``. Each is the very same class, not a subclass.
RayError = SluiceError
"""Ray's name for :class:`SluiceError`."""
RayTaskError = TaskError
"""Ray's name for :class:`TaskError` (a task or actor method raised)."""
RayActorError = ActorError
"""Ray's name for :class:`ActorError`: ``except RayActorError`` catches :class:`ActorDiedError`."""
TaskUnschedulableError = UnschedulableError
"""Ray's name for :class:`UnschedulableError` raised for a task."""
ActorUnschedulableError = UnschedulableError
"""Ray's name for :class:`UnschedulableError` raised for an actor."""
RaySystemError = InternalError
"""Ray's name for :class:`InternalError` (a fault inside the runtime, not in user code)."""

_dual_types: dict[tuple[type, type], type] = {}


def _noop_init(self, *args, **kwargs) -> None:  # the dual type is built by as_instanceof_cause
    pass


def _reduce_dual(self):
    base = type(self).__mro__[1]
    return (_rebuild_dual, (base, self.function_name, self.traceback_text, self.cause))


def _rebuild_dual(base: type, function_name: str, traceback_text: str, cause):
    return base(function_name, traceback_text, cause).as_instanceof_cause()


def _can_subclass(cls: type) -> bool:
    if not issubclass(cls, Exception):
        return False
    try:
        type("_probe", (TaskError, cls), {})
    except TypeError:  # layout conflicts (some C exception types)
        return False
    return True
