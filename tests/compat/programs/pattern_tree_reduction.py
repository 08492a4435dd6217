# Ray docs: Tasks, "Passing object refs to Ray tasks" --
#   https://docs.ray.io/en/latest/ray-core/tasks.html
# A tree reduction: partial sums are combined pairwise by tasks that take refs; only the
# final value is fetched.
# Expected output:
# | 120
import sluice as ray


@ray.remote
def add(x, y):
    return x + y


refs = [ray.put(i) for i in range(16)]
while len(refs) > 1:
    refs = [add.remote(refs[i], refs[i + 1]) for i in range(0, len(refs) - 1, 2)] + (
        [refs[-1]] if len(refs) % 2 else []
    )
print(ray.get(refs[0]))
