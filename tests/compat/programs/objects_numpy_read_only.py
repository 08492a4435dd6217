# Ray docs: Serialization, "Numpy arrays" (arrays from the object store are read-only,
# zero-copy views) -- https://docs.ray.io/en/latest/ray-core/objects/serialization.html
# Expected output:
# | ValueError: assignment destination is read-only
# | 1.0
# | False
import numpy as np

import sluice as ray


@ray.remote
def f(arr):
    # arr = arr.copy()  # Adding a copy will fix the error.
    arr[0] = 1


try:
    ray.get(f.remote(np.zeros(100)))
except ray.exceptions.RayTaskError as e:
    assert isinstance(e, ValueError)
    print("ValueError:", e.cause)


@ray.remote
def g(arr):
    arr = arr.copy()
    arr[0] = 1
    return arr


print(ray.get(g.remote(np.zeros(100)))[0])
print(ray.get(ray.put(np.zeros(1_000_000))).flags.writeable)
