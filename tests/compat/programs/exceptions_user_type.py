# Ray docs: Task fault tolerance, "Catching application-level failures" (user exception
# types) -- https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html
# The error raised at ray.get is both a RayTaskError and the task's own exception type.
# Expected output:
# | a user exception
# | True True
import sluice as ray


class MyException(Exception):
    ...


@ray.remote
def raises_my_exc():
    raise MyException("a user exception")


try:
    ray.get(raises_my_exc.remote())
except MyException as e:
    print(e.cause)
    print(isinstance(e, ray.exceptions.RayTaskError), isinstance(e, MyException))


@ray.remote
def divide(a, b):
    return a / b


try:
    ray.get(divide.remote(1, 0))
except ZeroDivisionError:
    pass
else:
    raise AssertionError("ZeroDivisionError expected")
