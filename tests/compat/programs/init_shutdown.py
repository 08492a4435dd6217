# Ray docs: Starting Ray, "Starting Ray on a single machine" --
#   https://docs.ray.io/en/latest/ray-core/starting-ray.html
# Expected output:
# | False
# | True
# | False
# | True
import sluice as ray

print(ray.is_initialized())
ray.init()
print(ray.is_initialized())
ray.shutdown()
print(ray.is_initialized())

# Calling init twice raises unless ignore_reinit_error=True.
ray.init(num_cpus=1)
ray.init(ignore_reinit_error=True)
try:
    ray.init()
except RuntimeError:
    pass
else:
    raise AssertionError("a second init() raises")
print(ray.is_initialized())
ray.shutdown()
