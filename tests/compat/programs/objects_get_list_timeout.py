# Ray docs: Objects, "Fetching object data" and the ray.get API reference (timeout on a
# list of refs) -- https://docs.ray.io/en/latest/ray-core/api/doc/ray.get.html
# Expected output:
# | timed out
# | [1, 2]
import time

import sluice as ray


@ray.remote
def quick(x):
    return x


@ray.remote
def stuck():
    time.sleep(1000)


stuck_ref = stuck.remote()
try:
    ray.get([quick.remote(1), stuck_ref], timeout=0.2)
except ray.exceptions.GetTimeoutError:
    print("timed out")
ray.cancel(stuck_ref, force=True)
print(ray.get([quick.remote(1), quick.remote(2)], timeout=60))
