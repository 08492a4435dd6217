"""``ray.actor`` for sluice programs: the actor types a Ray program names.

``import sluice as ray`` keeps ``ray.actor.ActorHandle`` (in type annotations, say)
and ``ray.actor.ActorClass`` working; they are the classes ``sluice`` exports.
"""

from sluice.dsl.actor import ActorClass
from sluice.executor.actor_handle import ActorHandle

__all__ = ["ActorClass", "ActorHandle"]
