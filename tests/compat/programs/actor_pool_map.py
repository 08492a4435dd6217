# Ray docs: ray.util.ActorPool (map, map_unordered) and "Utility Classes" --
#   https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.ActorPool.html
# map returns results in the order of its inputs; map_unordered as they finish.
# Expected output:
# | [2, 4, 6, 8]
# | [2, 4, 6, 8]
import sluice as ray
from sluice.util import ActorPool


@ray.remote
class Actor:
    def double(self, n):
        return n * 2


a1, a2 = Actor.remote(), Actor.remote()
pool = ActorPool([a1, a2])

# pool.map(..) returns a Python generator object ActorPool.map
gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
print([v for v in gen])

# map_unordered yields each result as soon as it is ready.
print(sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2, 3, 4])))
