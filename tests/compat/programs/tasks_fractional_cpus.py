# Ray docs: Resources, "Fractional resource requirements" --
#   https://docs.ray.io/en/latest/ray-core/scheduling/resources.html#fractional-resource-requirements
# Two tasks of num_cpus=0.5 fit on one CPU at once: they meet at a barrier actor.
# Expected output:
# | [1, 1]
import time

import sluice as ray

ray.init(num_cpus=1)


@ray.remote(num_cpus=0)
class Barrier:
    def __init__(self, n):
        self.n = n
        self.arrived = 0

    def arrive(self):
        self.arrived += 1

    def count(self):
        return self.arrived


@ray.remote(num_cpus=0.5)
def meet(barrier):
    ray.get(barrier.arrive.remote())
    deadline = time.time() + 60
    while ray.get(barrier.count.remote()) < 2:
        assert time.time() < deadline, "the other half-CPU task never ran beside this one"
        time.sleep(0.01)
    return 1


barrier = Barrier.remote(2)
print(ray.get([meet.remote(barrier), meet.remote(barrier)]))
