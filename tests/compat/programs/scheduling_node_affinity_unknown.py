# Ray docs: Scheduling, "NodeAffinitySchedulingStrategy" (soft=False to a node that does not
# exist fails; soft=True runs elsewhere) --
#   https://docs.ray.io/en/latest/ray-core/scheduling/index.html#nodeaffinityschedulingstrategy
# Ray raises TaskUnschedulableError at ray.get; sluice already at .remote() (a difference the
# README lists): the try covers both.
# Expected output:
# | TaskUnschedulableError
# | 1
import sluice as ray
from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy

missing_node = "ab" * 28


@ray.remote
def f():
    return 1


try:
    ray.get(f.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=missing_node, soft=False)
    ).remote())
except ray.exceptions.TaskUnschedulableError:
    print("TaskUnschedulableError")

print(ray.get(f.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=missing_node, soft=True)
).remote()))
