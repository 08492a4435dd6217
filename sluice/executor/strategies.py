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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    if isinstance(value, NodeAffinitySchedulingStrategy):
        return value
    raise ValueError(f"{where}: scheduling_strategy={value!r} is not one sluice runs; give None, "
                     "'DEFAULT' or sluice.util.scheduling_strategies.NodeAffinitySchedulingStrategy"
                     "(node_id, soft)")


def affinity_node(strategy: Any) -> tuple[str | None, bool]:
    """``(node id, soft)`` of a checked strategy; ``(None, True)`` when it names no node."""
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return strategy.node_id, strategy.soft
    return None, True
