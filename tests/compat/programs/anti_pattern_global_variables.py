# Ray docs: Anti-pattern "Using global variables to share state between tasks and actors" --
#   https://docs.ray.io/en/latest/ray-core/patterns/global-variables.html
# A driver's change to a global is not seen by an actor already started (another process);
# share state through an actor instead.
# Expected output:
# | 6
# | 7
import sluice as ray

ray.init()

global_var = 3


@ray.remote
class Actor:
    def f(self):
        return global_var + 3


actor = Actor.remote()
global_var = 4
# This returns 6, not 7: the actor runs in another process.
print(ray.get(actor.f.remote()))


@ray.remote
class GlobalVarActor:
    def __init__(self):
        self.global_var = 3

    def set_global_var(self, var):
        self.global_var = var

    def get_global_var(self):
        return self.global_var


@ray.remote
class SharingActor:
    def __init__(self, global_var_actor):
        self.global_var_actor = global_var_actor

    def f(self):
        return ray.get(self.global_var_actor.get_global_var.remote()) + 3


global_var_actor = GlobalVarActor.remote()
sharing_actor = SharingActor.remote(global_var_actor)
ray.get(global_var_actor.set_global_var.remote(4))
print(ray.get(sharing_actor.f.remote()))
