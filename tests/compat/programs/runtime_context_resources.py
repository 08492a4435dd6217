# Ray docs: ray.runtime_context.RuntimeContext.get_assigned_resources --
#   https://docs.ray.io/en/latest/ray-core/api/doc/ray.runtime_context.RuntimeContext.get_assigned_resources.html
# A task or actor sees the resources it was given: its CPUs, fractions and custom resources.
# Expected output:
# | {'CPU': 1.0}
# | {'CPU': 0.5}
# | {'CPU': 1.0, 'Custom': 2.0}
# | {'CPU': 2.0}
import sluice as ray

ray.init(num_cpus=2, resources={"Custom": 4})


@ray.remote(num_cpus=1)
def f():
    return ray.get_runtime_context().get_assigned_resources()


@ray.remote(num_cpus=2)
class Actor:
    def resources(self):
        return ray.get_runtime_context().get_assigned_resources()


print(ray.get(f.remote()))
print(ray.get(f.options(num_cpus=0.5).remote()))
print(dict(sorted(ray.get(f.options(resources={"Custom": 2}).remote()).items())))
print(ray.get(Actor.remote().resources.remote()))
