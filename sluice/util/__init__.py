"""Ray's ``ray.util`` surface: placement groups, ``sluice.util.scheduling_strategies``,
``ActorPool``, ``sluice.util.queue``, ``get_node_ip_address``, ``list_named_actors``,
``inspect_serializability``."""

from sluice.util.actor_pool import ActorPool
from sluice.util.check_serialize import inspect_serializability
from sluice.util.node import get_node_ip_address
from sluice.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = [
    "ActorPool",
    "PlacementGroup",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "inspect_serializability",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def list_named_actors(all_namespaces: bool = False) -> list:
    """The names of the live named actors of the current namespace, as Ray lists them; with
    ``all_namespaces=True``, ``{"name": ..., "namespace": ...}`` dicts over every namespace."""
    from sluice.executor.api import runtime
    from sluice.executor.runtime_context import current_namespace

    if not isinstance(all_namespaces, bool):
        raise TypeError(f"list_named_actors(all_namespaces={all_namespaces!r}): give True or False")
    if all_namespaces:
        return runtime().named_actors(None)
    return [entry["name"] for entry in runtime().named_actors(current_namespace())]
