# Ray docs: Tasks, "Remote functions" -- https://docs.ray.io/en/latest/ray-core/tasks.html
# A plain function becomes a remote function; .remote() returns an ObjectRef at once.
# Expected output:
# | 1
# | [0, 1, 4, 9]
import sluice as ray


def normal_function():
    return 1


@ray.remote
def my_function():
    return 1


obj_ref = my_function.remote()
assert isinstance(obj_ref, ray.ObjectRef)
assert ray.get(obj_ref) == normal_function()
print(ray.get(obj_ref))


@ray.remote
def square(x):
    return x * x


print(ray.get([square.remote(i) for i in range(4)]))
