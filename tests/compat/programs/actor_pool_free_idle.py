# Ray docs: ray.util.ActorPool.has_free / pop_idle / push --
#   https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.ActorPool.html
# An actor with a call in flight is not free; pop_idle takes an idle actor out of the
# pool and push puts one in.
# Expected output:
# | False
# | None
# | 2
# | True
# | True
# | False
# | True
# | 4
import sluice as ray
from sluice.util.actor_pool import ActorPool


@ray.remote
class Actor:
    def double(self, v):
        return 2 * v


a1, a2 = Actor.remote(), Actor.remote()
pool = ActorPool([a1])
pool.submit(lambda a, v: a.double.remote(v), 1)
print(pool.has_free())
print(pool.pop_idle())
print(pool.get_next())
print(pool.has_free())

popped = pool.pop_idle()
print(popped == a1)
print(pool.has_free())

pool.push(a2)
print(pool.has_free())
pool.submit(lambda a, v: a.double.remote(v), 2)
print(pool.get_next())
