# Ray docs: Threaded Actors (max_concurrency) --
#   https://docs.ray.io/en/latest/ray-core/actors/async_api.html#threaded-actors
# Calls run concurrently in up to max_concurrency threads: the two calls meet at a barrier
# that a one-at-a-time actor could never pass.
# Expected output:
# | [0, 1]
import threading

import sluice as ray


@ray.remote(max_concurrency=2)
class ThreadedActor:
    def __init__(self):
        self.barrier = threading.Barrier(2)

    def meet(self):
        return self.barrier.wait(timeout=60)


a = ThreadedActor.remote()
print(sorted(ray.get([a.meet.remote(), a.meet.remote()])))
