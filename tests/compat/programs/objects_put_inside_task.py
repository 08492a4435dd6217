# Ray docs: Objects, "Passing object arguments" and "Closure capture of objects" (refs made
# in a task travel back inside a result; refs captured by a remote function resolve there) --
#   https://docs.ray.io/en/latest/ray-core/objects.html
# Expected output:
# | [0, 10, 20]
# | 15
import sluice as ray


@ray.remote
def make_refs(n):
    # Refs nested in the return value come back as refs.
    return [ray.put(i * 10) for i in range(n)]


refs = ray.get(make_refs.remote(3))
print(ray.get(refs))

captured = ray.put(5)


@ray.remote
def uses_captured(x):
    # The ref is captured by the function's closure (it is a global here).
    return ray.get(captured) + x


print(ray.get(uses_captured.remote(10)))
