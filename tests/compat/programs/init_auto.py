# Ray docs: Starting Ray, "Starting Ray on a single machine" (ray.init() is called
# automatically on the first use of a Ray remote API) --
#   https://docs.ray.io/en/latest/ray-core/starting-ray.html
# Expected output:
# | False
# | 42
# | True
import sluice as ray

print(ray.is_initialized())


@ray.remote
def f():
    return 42


print(ray.get(f.remote()))
print(ray.is_initialized())
