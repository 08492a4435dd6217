# Ray docs: Nested Remote Functions -- https://docs.ray.io/en/latest/ray-core/tasks/nested-tasks.html
# A remote function calls other remote functions; only the caller's refs come back.
# Expected output:
# | [0, 1, 2, 3]
import sluice as ray


@ray.remote
def f():
    return 1


@ray.remote
def g():
    # Call f 4 times and return the resulting object refs.
    return [f.remote() for _ in range(4)]


@ray.remote
def h():
    # Call f 4 times, block until those 4 tasks finish,
    # retrieve the results, and return the values.
    return ray.get([f.remote() for _ in range(4)])


refs = ray.get(g.remote())
assert len(refs) == 4 and all(isinstance(r, ray.ObjectRef) for r in refs)
assert ray.get(refs) == [1, 1, 1, 1]
assert ray.get(h.remote()) == [1, 1, 1, 1]


@ray.remote
def add_index(i):
    return i


@ray.remote
def spawn(n):
    return ray.get([add_index.remote(i) for i in range(n)])


print(ray.get(spawn.remote(4)))
