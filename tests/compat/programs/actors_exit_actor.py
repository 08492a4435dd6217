# Ray docs: Actor fault tolerance, "Actor process failure" --
#   https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html
# An actor whose process dies, with no restarts left, fails its calls with ActorDiedError
# (a RayActorError).
# Expected output:
# | 1
# | actor died
import os

import sluice as ray


@ray.remote
class Actor:
    def __init__(self):
        self.counter = 0

    def increment(self):
        self.counter += 1
        return self.counter

    def crash(self):
        os._exit(0)


actor = Actor.remote()
print(ray.get(actor.increment.remote()))
try:
    ray.get(actor.crash.remote())
except ray.exceptions.RayActorError:
    pass
try:
    ray.get(actor.increment.remote())
except ray.exceptions.ActorDiedError:
    print("actor died")
