# Ray docs: Anti-pattern "Processing results in submission order using ray.get" --
#   https://docs.ray.io/en/latest/ray-core/patterns/ray-get-submission-order.html
# ray.wait hands back each result as soon as it is ready, not in submission order.
# Expected output:
# | [1, 2, 3, 4]
import time

import sluice as ray


@ray.remote
def f(i):
    return i


refs = [f.remote(i) for i in (4, 3, 2, 1)]
results = []
unfinished = refs
while unfinished:
    # Returns the first ObjectRef that is ready.
    finished, unfinished = ray.wait(unfinished, num_returns=1)
    results.append(ray.get(finished[0]))
print(sorted(results))
