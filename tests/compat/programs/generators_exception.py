# Ray docs: Ray Generators, "Error handling" --
#   https://docs.ray.io/en/latest/ray-core/ray-generator.html#error-handling
# An exception raised mid-stream comes after the items yielded before it, at the ref where
# it happened; the generator then ends.
# Expected output:
# | 0
# | Exception is raised when i == 1 as expected
# | StopIteration
import sluice as ray


@ray.remote
def task():
    for i in range(5):
        if i == 1:
            raise ValueError
        yield i


gen = task.remote()
# it's okay.
print(ray.get(next(gen)))

# Raises an exception
try:
    ray.get(next(gen))
except ValueError:
    print("Exception is raised when i == 1 as expected")

try:
    next(gen)
except StopIteration:
    print("StopIteration")
