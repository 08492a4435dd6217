# Ray docs: Tasks, "Waiting for partial results" -- https://docs.ray.io/en/latest/ray-core/tasks.html
# ray.wait returns (ready, not_ready) as soon as num_returns refs are ready, or at timeout.
# Expected output:
# | 1 1
# | 0 2
# | 2 0
import time

import sluice as ray


@ray.remote
def fast():
    return "fast"


@ray.remote
def blocked(seconds):
    time.sleep(seconds)
    return "slow"


fast_ref = fast.remote()
slow_ref = blocked.remote(1000)
ready_refs, remaining_refs = ray.wait([fast_ref, slow_ref], num_returns=1, timeout=None)
assert ready_refs == [fast_ref] and remaining_refs == [slow_ref]
print(len(ready_refs), len(remaining_refs))

# With a timeout, wait returns what is ready by then (here: nothing of the two slow ones).
slow_refs = [blocked.remote(1000), blocked.remote(1000)]
ready_refs, remaining_refs = ray.wait(slow_refs, num_returns=2, timeout=0.1)
print(len(ready_refs), len(remaining_refs))

for ref in [slow_ref, *slow_refs]:
    ray.cancel(ref, force=True)

refs = [fast.remote(), fast.remote()]
ready_refs, remaining_refs = ray.wait(refs, num_returns=len(refs))
print(len(ready_refs), len(remaining_refs))
