# Ray docs: Objects -- https://docs.ray.io/en/latest/ray-core/objects.html
# ray.put stores a value and returns a ref; ray.get of a ref or a list of refs.
# Expected output:
# | 1
# | [0, 1, 2]
import numpy as np

import sluice as ray

# Put an object in Ray's object store.
y = 1
object_ref = ray.put(y)
print(ray.get(object_ref))

# Get the values of multiple object refs in parallel.
print(ray.get([ray.put(i) for i in range(3)]))

# You can also set a timeout to return early from a ``get``
# that's blocking for too long.
a = ray.get(ray.put(np.zeros(10)), timeout=4)
assert (a == np.zeros(10)).all()
