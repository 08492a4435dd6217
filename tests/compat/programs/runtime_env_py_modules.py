# Ray docs: Environment Dependencies, "Library Development" (py_modules) --
#   https://docs.ray.io/en/latest/ray-core/handling-dependencies.html#library-development
# A local package given in py_modules is importable in the job's tasks, though the
# driver itself cannot import it.
# Expected output:
# | driver cannot import my_module
# | hello from my_module
import os
import tempfile

import sluice as ray

my_module = os.path.join(tempfile.mkdtemp(), "my_module")
os.makedirs(my_module)
with open(os.path.join(my_module, "__init__.py"), "w") as f:
    f.write("def test():\n    return 'hello from my_module'\n")

try:
    import my_module  # noqa: F401
except ImportError:
    print("driver cannot import my_module")

ray.init(runtime_env={"py_modules": [my_module]})


@ray.remote
def test_my_module():
    # No need to import my_module inside this function.
    import my_module

    return my_module.test()


print(ray.get(test_my_module.remote()))
