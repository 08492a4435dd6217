# Ray docs: Tasks, "Multiple returns" (a generator with num_returns=3) --
#   https://docs.ray.io/en/latest/ray-core/tasks.html
# The objects exist once the whole task has finished, as with a normal function.
# Expected output:
# | [0, 1, 2]
import sluice as ray


@ray.remote(num_returns=3)
def return_multiple_as_generator():
    for i in range(3):
        yield i


a, b, c = return_multiple_as_generator.remote()
print(ray.get([a, b, c]))
