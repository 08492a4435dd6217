# Ray docs: Objects, "Passing object arguments" -- https://docs.ray.io/en/latest/ray-core/objects.html
# Top-level ref arguments are resolved to values; refs nested in a list are passed as refs.
# Expected output:
# | values: [1, 2, 3]
# | top-level: 1
import sluice as ray


@ray.remote
def echo_and_get(x_list):  # List[ObjectRef]
    assert all(isinstance(x, ray.ObjectRef) for x in x_list)
    return ray.get(x_list)


@ray.remote
def echo(a):
    return a


a, b, c = ray.put(1), ray.put(2), ray.put(3)
print("values:", ray.get(echo_and_get.remote([a, b, c])))
print("top-level:", ray.get(echo.remote(a)))

# A ref kept inside a put value stays a ref too.
outer = ray.put({"inner": a})
assert ray.get(ray.get(outer)["inner"]) == 1
