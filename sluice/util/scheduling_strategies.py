"""``ray.util.scheduling_strategies`` for sluice programs: where a task or actor runs."""

from sluice.executor.strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
