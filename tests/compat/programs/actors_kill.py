# Ray docs: Terminating Actors, "Manual termination via an actor handle" --
#   https://docs.ray.io/en/latest/ray-core/actors/terminating-actors.html
# After ray.kill, calls on the actor raise RayActorError.
# Expected output:
# | pong
# | RayActorError
import sluice as ray


@ray.remote
class Actor:
    def ping(self):
        return "pong"


actor_handle = Actor.remote()
print(ray.get(actor_handle.ping.remote()))

ray.kill(actor_handle)

try:
    ray.get(actor_handle.ping.remote())
except ray.exceptions.RayActorError:
    print("RayActorError")
