# Ray docs: Actor fault tolerance, "Actor process failure" (max_restarts=-1,
#   max_task_retries=-1) -- https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html
# The actor exits after every 3 calls; it is restarted (its constructor runs again) and the
# call that killed it is retried on the new actor, so the caller sees no error.
# Expected output:
# | [1, 2, 3, 1, 2, 3, 1, 2, 3]
# | [False, False, False, True, True, True, True, True, True]
import os

import sluice as ray


@ray.remote(max_restarts=-1, max_task_retries=-1)
class Actor:
    def __init__(self):
        self.counter = 0

    def increment_and_possibly_fail(self):
        # Exit after every 3 tasks.
        if self.counter == 3:
            os._exit(0)
        self.counter += 1
        return self.counter, ray.get_runtime_context().was_current_actor_reconstructed


actor = Actor.remote()
results = [ray.get(actor.increment_and_possibly_fail.remote()) for _ in range(9)]
print([counter for counter, _ in results])
print([reconstructed for _, reconstructed in results])
