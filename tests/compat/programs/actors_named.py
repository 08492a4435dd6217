# Ray docs: Named Actors -- https://docs.ray.io/en/latest/ray-core/actors/named-actors.html
# An actor created with a name is found again with ray.get_actor(name).
# Expected output:
# | 2
# | Failed to find actor: True
import sluice as ray


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value


# Create an actor with a name
counter = Counter.options(name="some_name").remote()
ray.get(counter.increment.remote())

# Retrieve the actor later somewhere (keeping the first handle: in Ray a named actor that is
# not detached still dies once its creator's handles are gone).
same_counter = ray.get_actor("some_name")
print(ray.get(same_counter.increment.remote()))

try:
    ray.get_actor("no_such_actor")
except ValueError:
    print("Failed to find actor:", True)
