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
