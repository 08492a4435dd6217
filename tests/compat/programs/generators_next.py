# Ray docs: Ray Generators, "Getting started" -- https://docs.ray.io/en/latest/ray-core/ray-generator.html
# next() on an ObjectRefGenerator gives the next item's ref; after the last one it raises
# StopIteration, as a Python generator does.
# Expected output:
# | 0
# | 1
# | StopIteration
import sluice as ray


@ray.remote
def task():
    for i in range(2):
        yield i


gen = task.remote()
ref = next(gen)
print(ray.get(ref))
ref = next(gen)
print(ray.get(ref))
try:
    next(gen)
except StopIteration:
    print("StopIteration")
