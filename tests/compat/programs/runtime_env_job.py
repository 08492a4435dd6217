# Ray docs: Environment Dependencies, "Specifying a Runtime Environment Per-Job" and
#   "Inheritance" -- https://docs.ray.io/en/latest/ray-core/handling-dependencies.html
# ray.init(runtime_env=...) applies to every task and actor of the job; a task's own
# env_vars are merged with the job's, its values winning.
# Expected output:
# | a b None
# | a new c
# | a b
import os

import sluice as ray

ray.init(runtime_env={"env_vars": {"A": "a", "B": "b"}})


@ray.remote
def read(*names):
    return " ".join(str(os.environ.get(name)) for name in names)


@ray.remote
class Reader:
    def read(self, *names):
        return " ".join(str(os.environ.get(name)) for name in names)


print(ray.get(read.remote("A", "B", "C")))
print(ray.get(read.options(runtime_env={"env_vars": {"B": "new", "C": "c"}}).remote("A", "B", "C")))
print(ray.get(Reader.remote().read.remote("A", "B")))
