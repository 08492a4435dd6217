# Ray docs: Using Namespaces -- https://docs.ray.io/en/latest/ray-core/namespaces.html
# Named actors live in the job's namespace (ray.init(namespace=...)) unless given their
# own; get_actor finds a name only in the namespace it looks in.
# Expected output:
# | colors
# | orange found
# | my_actor found in actor_namespace
# | my_actor not in colors
# | ['orange']
import sluice as ray

ray.init(namespace="colors")

# Will print namespace name "colors".
print(ray.get_runtime_context().namespace)


@ray.remote
class Actor:
    def name(self):
        return "found"


# Named actors are kept alive by their handles (Ray collects a non-detached one once its
# creator's handles are gone).
orange = Actor.options(name="orange").remote()
print("orange", ray.get(ray.get_actor("orange").name.remote()))

# Create an actor with specified namespace.
mine = Actor.options(name="my_actor", namespace="actor_namespace").remote()

# It is accessible in its namespace.
found = ray.get_actor("my_actor", namespace="actor_namespace")
print("my_actor", ray.get(found.name.remote()), "in actor_namespace")

try:
    ray.get_actor("my_actor")
except ValueError:
    print("my_actor not in colors")

print(sorted(ray.util.list_named_actors()))
