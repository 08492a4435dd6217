# Ray docs: Scheduling, "SPREAD" --
#   https://docs.ray.io/en/latest/ray-core/scheduling/index.html#spread
# "SPREAD" spreads tasks and actors across the available nodes (here, the one node).
# Expected output:
# | [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
# | [1, 1]
import sluice as ray


@ray.remote(scheduling_strategy="SPREAD")
def spread_func():
    return 2


@ray.remote(num_cpus=1)
class SpreadActor:
    def get(self):
        return 1


# Spread tasks across the cluster.
print(ray.get([spread_func.remote() for _ in range(10)]))
# Spread actors across the cluster.
actors = [SpreadActor.options(scheduling_strategy="SPREAD").remote() for _ in range(2)]
print(ray.get([actor.get.remote() for actor in actors]))
