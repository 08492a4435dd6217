# Ray docs: Tasks -- https://docs.ray.io/en/latest/ray-core/tasks.html
# Remote functions take positional, keyword and default arguments like plain functions;
# a call that does not fit the signature raises TypeError.
# Expected output:
# | (1, 2, 10, {})
# | (1, 2, 3, {'d': 4})
# | TypeError
import sluice as ray


@ray.remote
def f(a, b, c=10, **kwargs):
    return a, b, c, kwargs


print(ray.get(f.remote(1, 2)))
print(ray.get(f.remote(1, b=ray.put(2), c=3, d=4)))
try:
    ray.get(f.remote())
except TypeError:
    print("TypeError")
