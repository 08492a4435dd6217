# Ray docs: Pattern "Using resources to limit the number of concurrently running tasks" --
#   https://docs.ray.io/en/latest/ray-core/patterns/limit-running-tasks.html
# Ray's example limits by `memory`; this one by a custom resource, which the page
# describes the same way: at most 2 of the tasks run at once.
# Expected output:
# | at most 2 at once: True
import time

import sluice as ray

ray.init(num_cpus=4, resources={"slot": 2})


@ray.remote(num_cpus=0)
class Tracker:
    def __init__(self):
        self.running = 0
        self.most = 0

    def enter(self):
        self.running += 1
        self.most = max(self.most, self.running)

    def leave(self):
        self.running -= 1

    def most_at_once(self):
        return self.most


@ray.remote(resources={"slot": 1})
def process(tracker, i):
    ray.get(tracker.enter.remote())
    time.sleep(0.05)
    ray.get(tracker.leave.remote())
    return i


tracker = Tracker.remote()
assert ray.get([process.remote(tracker, i) for i in range(8)]) == list(range(8))
print("at most 2 at once:", 1 <= ray.get(tracker.most_at_once.remote()) <= 2)
