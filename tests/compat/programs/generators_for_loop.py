# Ray docs: Ray Generators, "Getting started" -- https://docs.ray.io/en/latest/ray-core/ray-generator.html
# A remote function that yields returns an ObjectRefGenerator: each item's ref arrives as
# soon as the task yields it, before the task finishes.
# Expected output:
# | 0
# | 1
# | 2
# | 3
# | 4
import sluice as ray


@ray.remote
def task():
    for i in range(5):
        yield i


for ref in task.remote():
    print(ray.get(ref))
