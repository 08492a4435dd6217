# Ray docs: Anti-pattern "Calling ray.get in a loop harms parallelism" --
#   https://docs.ray.io/en/latest/ray-core/patterns/ray-get-loop.html
# Expected output:
# | [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
import sluice as ray


@ray.remote
def f(i):
    return i


# Better: schedule all remote calls, then get them together.
results = ray.get([f.remote(i) for i in range(10)])
results = [x * 2 for x in results]
print(results)
