# Ray docs: Environment Dependencies, "Specifying a Runtime Environment Per-Task or
#   Per-Actor" and the env_vars field --
#   https://docs.ray.io/en/latest/ray-core/handling-dependencies.html
# env_vars set per task with .options(), per actor class in its decorator; a task without
# them does not see them.
# Expected output:
# | myenv is bar
# | myenv is None
# | hello
import os

import sluice as ray


@ray.remote
def myfunc():
    myenv = os.environ.get("FOO")
    return f"myenv is {myenv}"


# Invoke a remote task that will run in a specified runtime environment.
print(ray.get(myfunc.options(runtime_env={"env_vars": {"FOO": "bar"}}).remote()))
print(ray.get(myfunc.remote()))


# Specify a runtime environment in the actor definition.
@ray.remote(runtime_env={"env_vars": {"GREETING": "hello"}})
class Greeter:
    def greet(self):
        return os.environ["GREETING"]


print(ray.get(Greeter.remote().greet.remote()))
