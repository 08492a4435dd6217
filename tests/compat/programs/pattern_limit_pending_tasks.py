# Ray docs: Pattern "Using ray.wait to limit the number of pending tasks" --
#   https://docs.ray.io/en/latest/ray-core/patterns/limit-pending-tasks.html
# Expected output:
# | 20
import sluice as ray


@ray.remote
class Actor:
    def __init__(self):
        self.calls = 0

    def heavy_compute(self):
        self.calls += 1
        return self.calls


actor = Actor.remote()
MAX_NUM_PENDING_TASKS = 5
result_refs = []
for _ in range(20):
    if len(result_refs) > MAX_NUM_PENDING_TASKS:
        # update result_refs to only
        # track the remaining tasks.
        ready_refs, result_refs = ray.wait(result_refs, num_returns=1)
        ray.get(ready_refs)

    result_refs.append(actor.heavy_compute.remote())

ray.get(result_refs)
print(ray.get(actor.heavy_compute.remote()) - 1)
