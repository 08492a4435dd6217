# Ray docs: Objects, "Fetching object data" (ray.get with a timeout) --
#   https://docs.ray.io/en/latest/ray-core/objects.html
# Expected output:
# | `get` timed out.
import time

import sluice as ray
from sluice.exceptions import GetTimeoutError


@ray.remote
def long_running_function():
    time.sleep(8)


obj_ref = long_running_function.remote()
try:
    ray.get(obj_ref, timeout=0.5)
except GetTimeoutError:  # You can capture the standard "TimeoutError" instead
    print("`get` timed out.")

try:
    ray.get(obj_ref, timeout=0.1)
except TimeoutError:
    pass
else:
    raise AssertionError("GetTimeoutError is a TimeoutError")
ray.cancel(obj_ref, force=True)
