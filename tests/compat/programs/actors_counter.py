# Ray docs: Actors -- https://docs.ray.io/en/latest/ray-core/actors.html
# An actor is a stateful worker; its methods run in call order.
# Expected output:
# | [1, 2, 3]
# | 3
import sluice as ray


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


# Create an actor from this class.
counter = Counter.remote()
print(ray.get([counter.increment.remote() for _ in range(3)]))
print(ray.get(counter.get_counter.remote()))
