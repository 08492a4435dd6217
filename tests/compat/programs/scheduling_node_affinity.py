# Ray docs: Scheduling, "NodeAffinitySchedulingStrategy" --
#   https://docs.ray.io/en/latest/ray-core/scheduling/index.html#nodeaffinityschedulingstrategy
# Ray's example takes the node id from ray.get_runtime_context().get_node_id(); this one
# takes it from ray.nodes(), which Ray has too.
# Expected output:
# | 2
# | 3
import sluice as ray
from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(num_cpus=2)
node_id = ray.nodes()[0]["NodeID"]


@ray.remote
def f():
    return 2


@ray.remote
class Actor:
    def ping(self):
        return 3


# Only run the task on the local node.
print(ray.get(f.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
).remote()))

# Run the actor on the local node, or anywhere if that node is gone (soft).
actor = Actor.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)
).remote()
print(ray.get(actor.ping.remote()))

# The "DEFAULT" strategy by name.
assert ray.get(f.options(scheduling_strategy="DEFAULT").remote()) == 2
