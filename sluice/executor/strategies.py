"""Scheduling strategies: where a task or actor may run, as Ray spells them.

A strategy is plain data given as the ``scheduling_strategy`` option of a task
or actor (``f.options(scheduling_strategy=...)``). Backends read it when they
place work; the Plan runner sets a soft node affinity for every stage the
locality pass placed on a node, so the cluster runs the stage where the Plan
says instead of re-deciding it.

- ``None`` or ``"DEFAULT"``: the backend's own choice (the node holding most
  input bytes, then the one with most free CPUs).
- :class:`NodeAffinitySchedulingStrategy`: run on ``node_id`` (a
  :attr:`~sluice.executor.backend.NodeInfo.node_id` from ``nodes()``). With
  ``soft=True`` the work goes elsewhere when that node is dead, unknown or has
  no room; with ``soft=False`` it runs only there, and fails with
  :class:`~sluice.exceptions.UnschedulableError` (a ``ValueError``) naming the
  node and the live ones when the node is unknown or dead: at ``.remote()`` on
  the local runtime, at ``get()`` on a cluster (a node may die after submission).
- ``"SPREAD"``: spread over the nodes with room (round-robin on a cluster; on one node
  it is the default).
- :class:`PlacementGroupSchedulingStrategy`: run inside a placement group's
  reservation (:mod:`sluice.executor.placement_groups`). Its demand is renamed to the
  group's resources when the options are checked (:func:`group_demand`), so the
  scheduler places it like any task and needs no strategy of its own for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from sluice.executor.resources import demand_key


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id``; ``soft=True`` lets the backend fall back to another node.

    >>> NodeAffinitySchedulingStrategy("node-1", soft=True)
    NodeAffinitySchedulingStrategy(node_id='node-1', soft=True, _spill_on_unavailable=False, _fail_on_unavailable=False)
    """

    node_id: str
    soft: bool
    _spill_on_unavailable: bool = False
    _fail_on_unavailable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ValueError(f"NodeAffinitySchedulingStrategy: node_id={self.node_id!r} must be a "
                             "non-empty node id string (see sluice.nodes())")
        if not isinstance(self.soft, bool):
            raise ValueError(f"NodeAffinitySchedulingStrategy: soft={self.soft!r} must be True or False")


DEFAULT = "DEFAULT"
SPREAD = "SPREAD"


@dataclass(frozen=True)
class PlacementGroupSchedulingStrategy:
    """Run inside ``placement_group``'s reservation: in bundle ``placement_group_bundle_index``
    (-1: any bundle with room). With ``placement_group_capture_child_tasks``, tasks and actors
    submitted from inside without a strategy of their own run in the group too (any bundle)."""

    placement_group: Any
    placement_group_bundle_index: int = -1
    placement_group_capture_child_tasks: bool = False

    def __post_init__(self) -> None:
        pg = self.placement_group
        if not hasattr(pg, "bundle_specs") or not hasattr(pg, "id"):
            raise ValueError(f"PlacementGroupSchedulingStrategy: placement_group={pg!r} is not a "
                             "placement group; make one with sluice.util.placement_group(bundles)")
        index = self.placement_group_bundle_index
        if isinstance(index, bool) or not isinstance(index, int) \
                or not -1 <= index < len(pg.bundle_specs):
            raise ValueError(f"PlacementGroupSchedulingStrategy: placement_group_bundle_index={index!r} "
                             f"is not a bundle of a group of {len(pg.bundle_specs)} bundles; give "
                             f"0..{len(pg.bundle_specs) - 1}, or -1 for any bundle")


def group_resource(name: str, group_id: str, index: int = -1) -> str:
    """The name of resource ``name`` of bundle ``index`` (-1: any bundle) of a group, as Ray
    names it.

    >>> group_resource("CPU", "ab12", 0), group_resource("CPU", "ab12")
    ('CPU_group_0_ab12', 'CPU_group_ab12')
    """
    return f"{name}_group_{group_id}" if index < 0 else f"{name}_group_{index}_{group_id}"


BUNDLE_MARK = 0.001
"""What a task in a group takes of its bundle's ``bundle`` resource (each bundle has 1000, as
in Ray): a task asking for nothing else is still held to the group's nodes."""


def group_demand(key: tuple, strategy: PlacementGroupSchedulingStrategy, where: str) -> tuple:
    """The demand ``key`` renamed into ``strategy``'s group; ``ValueError`` when it exceeds
    the bundle (every bundle, for index -1), which it could then never get.

    >>> from types import SimpleNamespace as NS
    >>> pg = NS(id="ab12", bundle_specs=[{"CPU": 1}])
    >>> group_demand((("CPU", 1.0),), PlacementGroupSchedulingStrategy(pg), "f")
    (('CPU_group_ab12', 1.0), ('bundle_group_ab12', 0.001))
    """
    pg, index = strategy.placement_group, strategy.placement_group_bundle_index
    bundles = pg.bundle_specs if index < 0 else [pg.bundle_specs[index]]
    if not any(all(b.get(n, 0.0) >= a - 1e-9 for n, a in key) for b in bundles):
        which = f"bundle {index} {bundles[0]}" if index >= 0 else f"every bundle of {pg.bundle_specs}"
        raise ValueError(f"{where}: its demand {dict(key)} does not fit {which} of placement group "
                         f"{pg.id}; lower the demand or give the group larger bundles")
    items = [(group_resource(n, pg.id, index), a) for n, a in key]
    items.append((group_resource("bundle", pg.id, index), BUNDLE_MARK))
    return tuple(sorted(items))


def options_demand(options: dict, where: str) -> tuple:
    """The demand of work with runtime ``options``: its ``_key`` (what the DSL's options
    computed), else one made from its resources, renamed into its placement group when its
    ``scheduling_strategy`` names one (options made outside the DSL, e.g. by a library's
    actor factory, would otherwise ask for resources the group holds, and wait for ever)."""
    key = options.get("_key")
    if key is None:
        key = demand_key(options["num_cpus"], options["num_gpus"], options["resources"])
        strategy = options.get("scheduling_strategy")
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            key = group_demand(key, strategy, where)
    return key


def check_strategy(value: Any, where: str) -> Any:
    """``value`` as a scheduling strategy, or ``ValueError`` naming it and what is accepted.

    >>> check_strategy("DEFAULT", "f") is None
    True
    >>> check_strategy("SOMEWHERE", "f")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: f: scheduling_strategy='SOMEWHERE' is not one sluice runs; ...
    """
    if value is None or value == DEFAULT:
        return None
    if isinstance(value, (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)):
        return value
    if value == SPREAD:
        return SPREAD
    raise ValueError(f"{where}: scheduling_strategy={value!r} is not one sluice runs; give None, "
                     "'DEFAULT', 'SPREAD', sluice.util.scheduling_strategies.NodeAffinitySchedulingStrategy"
                     "(node_id, soft) or PlacementGroupSchedulingStrategy(placement_group)")


def placed_strategy(value: Any) -> Any:
    """What the scheduler places by: a node affinity, ``"SPREAD"`` or None (a group's tasks
    are held to it by their renamed demand)."""
    return None if isinstance(value, PlacementGroupSchedulingStrategy) else value


def is_affinity(strategy: Any) -> TypeGuard[NodeAffinitySchedulingStrategy]:
    """Whether ``strategy`` pins work to a node."""
    return isinstance(strategy, NodeAffinitySchedulingStrategy)


def affinity_node(strategy: Any) -> tuple[str | None, bool]:
    """``(node id, soft)`` of a checked strategy; ``(None, True)`` when it names no node."""
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return strategy.node_id, strategy.soft
    return None, True
