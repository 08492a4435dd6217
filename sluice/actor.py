"""``ray.actor`` for sluice programs: the actor types a Ray program names, and ``exit_actor``.

``import sluice as ray`` keeps ``ray.actor.ActorHandle`` (in type annotations, say)
and ``ray.actor.ActorClass`` working; they are the classes ``sluice`` exports.
"""

from __future__ import annotations

from typing import NoReturn

from sluice.dsl.actor import ActorClass
from sluice.executor.actor_handle import ActorHandle

__all__ = ["ActorClass", "ActorHandle", "exit_actor"]


def exit_actor() -> NoReturn:
    """End the current actor from inside one of its methods (Ray's ``ray.actor.exit_actor``).

    It raises (``SystemExit`` in a sync actor, :class:`~sluice.exceptions.AsyncioActorExit`
    in an async one; let it propagate): the ``get`` of the calling method's result, and of
    every call queued or made after it, raises :class:`~sluice.exceptions.ActorDiedError`.
    The actor is not restarted (whatever its ``max_restarts``), its name is free again, and
    its process runs its ``atexit`` handlers and exits. ``handle.__ray_terminate__.remote()``
    does the same from outside, after the calls queued before it. Called in a constructor,
    the actor's creation fails the same way. Outside an actor it raises ``TypeError``.
    """
    from sluice.exceptions import UnsupportedOnBackendError
    from sluice.executor import context

    rt = context.current()
    exit_here = getattr(rt, "exit_actor", None)
    if exit_here is not None:
        exit_here()  # raises
    if rt is not None and type(rt).__module__.startswith("sluice.executor.dask"):
        raise UnsupportedOnBackendError(
            "exit_actor() on the dask backend: a Dask actor cannot end itself; kill it from "
            "its caller with sluice.kill(handle)")
    raise TypeError("exit_actor() was called outside an actor (in the driver); it ends the actor "
                    "whose method calls it; to stop an actor from outside use sluice.kill(handle) "
                    "or handle.__ray_terminate__.remote()")
