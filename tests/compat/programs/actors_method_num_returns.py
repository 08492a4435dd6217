# Ray docs: Actors, "Multiple returns" for actor methods (ray.method(num_returns=...)) --
#   https://docs.ray.io/en/latest/ray-core/actors.html
# Expected output:
# | 1 2
import sluice as ray


@ray.remote
class Foo:
    # Use the method decorator to specify the number of returns.
    @ray.method(num_returns=2)
    def bar(self):
        return 1, 2


f = Foo.remote()
obj_ref1, obj_ref2 = f.bar.remote()
print(ray.get(obj_ref1), ray.get(obj_ref2))
