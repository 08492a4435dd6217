# Ray docs: Anti-pattern "Calling ray.get unnecessarily harms performance" --
#   https://docs.ray.io/en/latest/ray-core/patterns/unnecessary-ray-get.html
# Pass the ref on instead of fetching it in the driver.
# Expected output:
# | 1000000.0
import numpy as np

import sluice as ray


@ray.remote
def generate_rollout():
    return np.ones((1000, 1000))


@ray.remote
def reduce(rollout):
    return float(np.sum(rollout))


# Don't need ray.get here.
rollout_obj_ref = generate_rollout.remote()
# Rollout object is passed by reference.
reduced = ray.get(reduce.remote(rollout_obj_ref))
print(reduced)
