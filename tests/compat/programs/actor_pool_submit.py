# Ray docs: ray.util.ActorPool.submit / get_next / has_next / get_next_unordered --
#   https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.ActorPool.html
# submit queues a call when every actor is busy; get_next returns results in submit order.
# Expected output:
# | True
# | 2 4 6
# | False
# | [2, 4]
import sluice as ray
from sluice.util.actor_pool import ActorPool


@ray.remote
class Actor:
    def double(self, v):
        return 2 * v


a1, a2 = Actor.remote(), Actor.remote()
pool = ActorPool([a1, a2])
for v in [1, 2, 3]:
    pool.submit(lambda a, v: a.double.remote(v), v)
print(pool.has_next())
print(pool.get_next(), pool.get_next(), pool.get_next())
print(pool.has_next())

pool.submit(lambda a, v: a.double.remote(v), 1)
pool.submit(lambda a, v: a.double.remote(v), 2)
print(sorted([pool.get_next_unordered(), pool.get_next_unordered()]))
