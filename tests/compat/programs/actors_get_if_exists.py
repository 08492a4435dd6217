# Ray docs: Named Actors, "Get-Or-Create a Named Actor" --
#   https://docs.ray.io/en/latest/ray-core/actors/named-actors.html#get-or-create-a-named-actor
# get_if_exists=True returns the live actor of that name (ignoring the new arguments) or
# creates it; without it a second actor of a taken name is refused.
# Expected output:
# | Old Greeting
# | Old Greeting
# | ValueError
import sluice as ray


@ray.remote
class Greeter:
    def __init__(self, value):
        self.value = value

    def say_hello(self):
        return self.value


# Actor `g1` doesn't yet exist, so it is created with the given args.
a = Greeter.options(name="g1", get_if_exists=True).remote("Old Greeting")
print(ray.get(a.say_hello.remote()))

# Actor `g1` already exists, so it is returned (new args are ignored).
b = Greeter.options(name="g1", get_if_exists=True).remote("New Greeting")
print(ray.get(b.say_hello.remote()))

try:
    Greeter.options(name="g1").remote("Another Greeting")
except ValueError:
    print("ValueError")
