# Ray docs: Task fault tolerance, "Catching application-level failures" (an exception type
# that cannot be subclassed) -- https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html
# Such an error is raised as a plain RayTaskError; .cause is the user's exception.
# Expected output:
# | <class '__main__.MyFinalException'>
# | a *final* user exception
import sluice as ray


class MyFinalException(Exception):
    def __init_subclass__(cls, /, *args, **kwargs):
        raise TypeError("Cannot subclass this little exception class.")


@ray.remote
def raises_my_final_exc():
    raise MyFinalException("a *final* user exception")


try:
    ray.get(raises_my_final_exc.remote())
except ray.exceptions.RayTaskError as e:
    assert isinstance(e.cause, MyFinalException)
    print(type(e.cause))
    print(e.cause)
