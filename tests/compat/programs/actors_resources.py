# Ray docs: Actors, "Specifying required resources" -- https://docs.ray.io/en/latest/ray-core/actors.html
# Expected output:
# | 0
# | 1
import sluice as ray

ray.init(num_cpus=2, num_gpus=1)


@ray.remote(num_cpus=2, num_gpus=0.5)
class Actor:
    def ping(self):
        return 0


@ray.remote
class Counter:
    def __init__(self, start):
        self.value = start

    def increment(self):
        self.value += 1
        return self.value


actor = Actor.remote()
print(ray.get(actor.ping.remote()))

# Per-actor options with .options(), constructor arguments with .remote().
counter = Counter.options(num_cpus=0).remote(0)
print(ray.get(counter.increment.remote()))
