# Ray docs: Actors, "Passing around actor handles" (handles travel inside objects too) --
#   https://docs.ray.io/en/latest/ray-core/actors.html#passing-around-actor-handles
# Expected output:
# | [1, 2]
import sluice as ray


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value


@ray.remote
def use(config):
    return ray.get(config["counter"].increment.remote())


counter = Counter.remote()
config_ref = ray.put({"counter": counter})
print([ray.get(use.remote(config_ref)) for _ in range(2)])
