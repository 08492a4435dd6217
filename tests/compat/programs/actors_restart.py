# Ray docs: Actor fault tolerance, "Actor process failure" (max_restarts) --
#   https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html
# Ray's example also sets max_task_retries=-1 so the failing call is retried; without it
# (the default, 0) that call raises RayActorError and later calls reach the restarted
# actor, whose constructor ran again.
# Expected output:
# | [1, 2, 3]
# | FAILURE
# | [1, 2, 3]
# | FAILURE
# | FAILURE
import os

import sluice as ray


@ray.remote(max_restarts=1)
class Actor:
    def __init__(self):
        self.counter = 0

    def increment_and_possibly_fail(self):
        # Exit after every 3 tasks.
        if self.counter == 3:
            os._exit(0)
        self.counter += 1
        return self.counter


actor = Actor.remote()
for _ in range(2):
    print([ray.get(actor.increment_and_possibly_fail.remote()) for _ in range(3)])
    try:
        ray.get(actor.increment_and_possibly_fail.remote())
    except ray.exceptions.RayActorError:
        print("FAILURE")

# The one restart is spent: every later call raises.
try:
    ray.get(actor.increment_and_possibly_fail.remote())
except ray.exceptions.RayActorError:
    print("FAILURE")
