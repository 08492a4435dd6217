# Ray docs: Tasks, "Multiple returns" -- https://docs.ray.io/en/latest/ray-core/tasks.html
# Expected output: (none: the program asserts)
import sluice as ray


@ray.remote
def return_single():
    return 0, 1, 2


object_ref = return_single.remote()
assert ray.get(object_ref) == (0, 1, 2)


@ray.remote(num_returns=3)
def return_multiple():
    return 0, 1, 2


object_ref0, object_ref1, object_ref2 = return_multiple.remote()
assert ray.get(object_ref0) == 0
assert ray.get(object_ref1) == 1
assert ray.get(object_ref2) == 2



# num_returns can also be set per call with .options().
@ray.remote
def return_pair():
    return "a", "b"


first, second = return_pair.options(num_returns=2).remote()
assert ray.get([first, second]) == ["a", "b"]
