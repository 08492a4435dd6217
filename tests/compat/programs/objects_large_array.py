# Ray docs: Anti-pattern "Passing the same large argument by value repeatedly" --
#   https://docs.ray.io/en/latest/ray-core/patterns/pass-large-arg-by-value.html
# Put the array once and pass its ref to every task.
# Expected output:
# | [1000000.0, 1000000.0, 1000000.0, 1000000.0]
import numpy as np

import sluice as ray


@ray.remote
def do_work(a):
    # do some work with the large object a
    return float(np.sum(a))


# Better approach: put the large array once into the object store.
array_ref = ray.put(np.ones(1_000_000))
print(ray.get([do_work.remote(array_ref) for _ in range(4)]))
