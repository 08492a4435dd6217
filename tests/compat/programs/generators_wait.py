# Ray docs: Ray Generators, "ray.wait for generators" --
#   https://docs.ray.io/en/latest/ray-core/ray-generator.html#ray-wait-for-generators
# ray.wait takes an ObjectRefGenerator: it is ready when its next item is. Here the task
# yields only when the driver tells it to, so the driver sees each item while the task
# is still running.
# Expected output:
# | timeout 0, nothing is ready: 0 1
# | the next item is ready: 1 0
# | 0
# | the second item is not ready yet: 0 1
# | 1
# | StopIteration
import sluice as ray
from sluice.util.queue import Queue


@ray.remote
def task(go):
    for i in range(2):
        go.get()
        yield i


go = Queue()
gen = task.remote(go)

# The task has not yielded yet: with 0 timeout, the generator is unready.
ready, unready = ray.wait([gen], timeout=0)
print("timeout 0, nothing is ready:", len(ready), len(unready))

go.put("go")
# Without a timeout, ray.wait waits until the next item is ready.
ready, unready = ray.wait([gen])
print("the next item is ready:", len(ready), len(unready))
print(ray.get(next(gen)))

ready, unready = ray.wait([gen], timeout=0)
print("the second item is not ready yet:", len(ready), len(unready))
go.put("go")
print(ray.get(next(gen)))
try:
    next(gen)
except StopIteration:
    print("StopIteration")
