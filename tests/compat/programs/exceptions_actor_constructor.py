# Ray docs: Actor fault tolerance -- https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html
# An actor whose constructor raises is dead: every call on it raises RayActorError.
# Expected output:
# | RayActorError
# | RayActorError
import sluice as ray


@ray.remote
class Broken:
    def __init__(self):
        raise RuntimeError("cannot start")

    def ping(self):
        return "pong"


actor = Broken.remote()
for _ in range(2):
    try:
        ray.get(actor.ping.remote())
    except ray.exceptions.RayActorError:
        print("RayActorError")
