# Ray docs: Named Actors -- https://docs.ray.io/en/latest/ray-core/actors/named-actors.html
# A task finds a named actor by name instead of receiving its handle.
# Expected output:
# | ['a', 'b', 'c']
import sluice as ray


@ray.remote
class Store:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def get_items(self):
        return sorted(self.items)


@ray.remote
def producer(item):
    store = ray.get_actor("store")
    ray.get(store.add.remote(item))


store = Store.options(name="store").remote()
ray.get([producer.remote(x) for x in "abc"])
print(ray.get(store.get_items.remote()))
