# Ray docs: Tasks, "Passing object refs to Ray tasks" -- https://docs.ray.io/en/latest/ray-core/tasks.html
# A ref passed as a top-level argument arrives as its value; the task waits for it.
# Expected output: (none: the program asserts)
import sluice as ray


@ray.remote
def my_function():
    return 1


@ray.remote
def function_with_an_argument(value):
    return value + 1


obj_ref1 = my_function.remote()
assert ray.get(obj_ref1) == 1

obj_ref2 = function_with_an_argument.remote(obj_ref1)
assert ray.get(obj_ref2) == 2

# Chains of refs: each task starts once its argument exists.
ref = ray.put(0)
for _ in range(5):
    ref = function_with_an_argument.remote(ref)
assert ray.get(ref) == 5
