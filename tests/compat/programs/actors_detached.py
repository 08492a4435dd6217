# Ray docs: Named Actors, "Actor Lifetimes" (lifetime="detached") and Terminating Actors --
#   https://docs.ray.io/en/latest/ray-core/actors/named-actors.html#actor-lifetimes
# A detached actor lives on with no handle left, found by its name, until ray.kill ends
# it; its name is then free, and calls on it raise RayActorError.
# Expected output:
# | 1
# | 2
# | name released
# | RayActorError
import time

import sluice as ray

ray.init(namespace="counters")


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value


counter = Counter.options(name="CounterActor", lifetime="detached").remote()
print(ray.get(counter.increment.remote()))
del counter

counter = ray.get_actor("CounterActor")
print(ray.get(counter.increment.remote()))

ray.kill(counter)

# ray.kill is asynchronous: poll until the name is gone.
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        ray.get_actor("CounterActor")
    except ValueError:
        print("name released")
        break

try:
    ray.get(counter.increment.remote())
except ray.exceptions.RayActorError:
    print("RayActorError")
