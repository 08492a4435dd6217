# Ray docs: Nested Remote Functions, "Yielding resources while blocked" (a task that waits
# on its children frees its CPU for them) --
#   https://docs.ray.io/en/latest/ray-core/tasks/nested-tasks.html#yielding-resources-while-blocked
# With one CPU the parent runs, blocks in ray.wait/ray.get, and its children still run.
# Expected output:
# | [0, 1, 2, 3]
import sluice as ray

ray.init(num_cpus=1)


@ray.remote(num_cpus=1)
def child(i):
    return i


@ray.remote(num_cpus=1)
def parent():
    refs = [child.remote(i) for i in range(4)]
    ready, _ = ray.wait(refs, num_returns=4)
    assert len(ready) == 4
    return ray.get(refs)


print(ray.get(parent.remote()))
