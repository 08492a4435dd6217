# Ray docs: Environment Dependencies, "Using Local Files" (working_dir) --
#   https://docs.ray.io/en/latest/ray-core/handling-dependencies.html#using-local-files
# The job's working_dir is copied to the workers: tasks start in their copy of it, so a
# relative path opens its files and its modules import.
# Expected output:
# | Hello World!
# | 42
import os
import tempfile

import sluice as ray

working_dir = tempfile.mkdtemp()
with open(os.path.join(working_dir, "hello.txt"), "w") as hello_file:
    hello_file.write("Hello World!")
with open(os.path.join(working_dir, "answer.py"), "w") as module_file:
    module_file.write("ANSWER = 42\n")

# Specify a runtime environment for the entire Ray job
ray.init(runtime_env={"working_dir": working_dir})


# Create a Ray task, which inherits the above runtime env.
@ray.remote
def f():
    # The function will have its working directory changed to its node's
    # local copy of the working_dir.
    return open("hello.txt").read()


@ray.remote
def g():
    import answer

    return answer.ANSWER


print(ray.get(f.remote()))
print(ray.get(g.remote()))
