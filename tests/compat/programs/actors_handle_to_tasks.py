# Ray docs: Actors, "Passing around actor handles" -- https://docs.ray.io/en/latest/ray-core/actors.html
# Tasks (and other actors) call an actor through a handle passed as an argument.
# Expected output:
# | 9
import time

import sluice as ray


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


@ray.remote
def f(counter):
    for _ in range(3):
        ray.get(counter.increment.remote())


counter = Counter.remote()

# Start some tasks that use the actor.
ray.get([f.remote(counter) for _ in range(3)])
print(ray.get(counter.get_counter.remote()))
