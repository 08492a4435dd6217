# Ray docs: Resources, "Specifying node resources" and the ray.cluster_resources() /
# ray.available_resources() API -- https://docs.ray.io/en/latest/ray-core/scheduling/resources.html
# Expected output:
# | 3.0 1.0 2.0
# | True
import time

import sluice as ray

ray.init(num_cpus=3, num_gpus=1, resources={"special_hardware": 2})
total = ray.cluster_resources()
print(float(total["CPU"]), float(total["GPU"]), float(total["special_hardware"]))


@ray.remote(num_cpus=2, resources={"special_hardware": 1})
class Holder:
    def ping(self):
        return True


holder = Holder.remote()
print(ray.get(holder.ping.remote()))

# While the actor lives it holds 2 CPUs and one special_hardware.
deadline = time.time() + 60
while ray.available_resources().get("special_hardware", 0) != 1:
    assert time.time() < deadline, ray.available_resources()
    time.sleep(0.05)
assert ray.available_resources().get("CPU", 0) == 1

ray.kill(holder)
deadline = time.time() + 60
while ray.available_resources().get("CPU", 0) != 3:
    assert time.time() < deadline, ray.available_resources()
    time.sleep(0.05)
