# Ray docs: Ray Generators, "Generator from Actor Tasks" --
#   https://docs.ray.io/en/latest/ray-core/ray-generator.html#generator-from-actor-tasks
# Sync, async and threaded actors' methods can be generators too.
# Expected output:
# | [0, 1, 2, 3, 4]
# | [0, 1, 2, 3, 4]
# | [0, 1, 2, 3, 4]
import sluice as ray


@ray.remote
class Actor:
    def f(self):
        for i in range(5):
            yield i


@ray.remote
class AsyncActor:
    async def f(self):
        for i in range(5):
            yield i


@ray.remote(max_concurrency=5)
class ThreadedActor:
    def f(self):
        for i in range(5):
            yield i


actor = Actor.remote()
print([ray.get(ref) for ref in actor.f.remote()])

actor = AsyncActor.remote()
print([ray.get(ref) for ref in actor.f.remote()])

actor = ThreadedActor.remote()
print([ray.get(ref) for ref in actor.f.remote()])
