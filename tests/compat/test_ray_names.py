"""Ray's module and exception names that ``import sluice as ray`` programs reach."""

from __future__ import annotations

import sluice
from sluice import exceptions as ex


def test_rays_module_and_exception_names_are_sluices_own_classes() -> None:
    # ray.actor.ActorHandle and ray.exceptions.RayTaskError keep working under sluice.
    assert sluice.actor.ActorHandle is sluice.ActorHandle
    assert sluice.actor.ActorClass is sluice.ActorClass
    assert ex.RayError is ex.SluiceError and ex.RayTaskError is ex.TaskError
    assert issubclass(ex.ActorDiedError, ex.RayActorError)
    assert ex.TaskUnschedulableError is ex.ActorUnschedulableError is ex.UnschedulableError
    assert ex.RaySystemError is ex.InternalError
    assert set(ex.__all__) <= set(vars(ex))


def test_rays_other_exceptions_keep_rays_hierarchy() -> None:
    # The classes a Ray program catches, under the bases Ray gives them (and sluice's own
    # bases where sluice raised another class for the same failure before).
    for name, bases in {
        "ActorUnavailableError": (ex.RayActorError,),
        "AsyncioActorExit": (ex.RayError,),
        "ObjectStoreFullError": (ex.RayError, OSError),
        "OutOfDiskError": (ex.RayError, OSError),
        "OutOfMemoryError": (ex.RayError,),
        "NodeDiedError": (ex.RayError,),
        "ObjectFetchTimedOutError": (ex.ObjectLostError,),
        "OwnerDiedError": (ex.ObjectLostError,),
        "ObjectReconstructionFailedError": (ex.ObjectLostError,),
        "ObjectReconstructionFailedMaxAttemptsExceededError": (ex.ObjectLostError,),
        "ObjectReconstructionFailedLineageEvictedError": (ex.ObjectLostError,),
        "PendingCallsLimitExceeded": (ex.RayError,),
        "TaskPlacementGroupRemoved": (ex.RayError, ex.UnschedulableError),
        "ActorPlacementGroupRemoved": (ex.RayError, ex.UnschedulableError),
        "RuntimeEnvSetupError": (ex.RayError,),
        "GetTimeoutError": (ex.RayError, TimeoutError),
    }.items():
        cls = getattr(ex, name)
        assert name in ex.__all__ and cls.__doc__, name
        assert all(issubclass(cls, base) for base in bases), (name, cls.__mro__)


def test_rays_exceptions_survive_pickling_with_their_fields() -> None:
    import errno
    import pickle

    full = pickle.loads(pickle.dumps(ex.ObjectStoreFullError(errno.ENOSPC, "no room")))
    assert type(full) is ex.ObjectStoreFullError and full.errno == errno.ENOSPC
    unavailable = pickle.loads(pickle.dumps(ex.ActorUnavailableError("restarting", "ab12")))
    assert str(unavailable) == "the actor ab12 is unavailable: restarting"
    assert pickle.loads(pickle.dumps(ex.OutOfMemoryError("node at 95%"))).message == "node at 95%"
