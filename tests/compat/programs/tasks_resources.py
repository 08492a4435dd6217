# Ray docs: Tasks, "Specifying required resources" and Resources, "Custom resources" --
#   https://docs.ray.io/en/latest/ray-core/tasks.html
#   https://docs.ray.io/en/latest/ray-core/scheduling/resources.html
# Expected output:
# | 1 1 1
import sluice as ray

ray.init(num_cpus=4, num_gpus=2, resources={"Custom": 1})


@ray.remote(num_cpus=4, num_gpus=2)
def my_function():
    return 1


# Ray also supports fractional resource requirements.
@ray.remote(num_gpus=0.5)
def h():
    return 1


# Ray supports custom resources too.
@ray.remote(resources={"Custom": 1})
def f():
    return 1


print(ray.get(my_function.remote()), ray.get(h.remote()), ray.get(f.remote()))

# .options() overrides the decorator's resources for one call.
assert ray.get(my_function.options(num_cpus=1, num_gpus=0).remote()) == 1
