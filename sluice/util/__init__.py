"""Ray's ``ray.util`` surface: ``sluice.util.scheduling_strategies``, ``ActorPool``,
``sluice.util.queue``, ``get_node_ip_address``."""

from sluice.util.actor_pool import ActorPool
from sluice.util.node import get_node_ip_address

__all__ = ["ActorPool", "get_node_ip_address"]
