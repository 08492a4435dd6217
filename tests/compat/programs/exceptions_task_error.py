# Ray docs: Task fault tolerance, "Catching application-level failures" --
#   https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html
# A task's exception re-raises at ray.get as RayTaskError; a task whose argument failed
# raises it too.
# Expected output:
# | caught: the real error
# | caught from g: the real error
import sluice as ray


@ray.remote
def f():
    raise Exception("the real error")


@ray.remote
def g(x):
    return


try:
    ray.get(f.remote())
except ray.exceptions.RayTaskError as e:
    assert "the real error" in str(e)
    print("caught:", e.cause)

try:
    ray.get(g.remote(f.remote()))
except ray.exceptions.RayTaskError as e:
    assert "the real error" in str(e)
    print("caught from g:", e.cause if not isinstance(e.cause, ray.exceptions.RayTaskError)
          else e.cause.cause)
