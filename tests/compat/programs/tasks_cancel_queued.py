# Ray docs: Tasks, "Cancelling tasks" (a task that has not started never runs) --
#   https://docs.ray.io/en/latest/ray-core/tasks.html#cancelling-tasks
# Expected output:
# | cancelled before it ran: True
# | the first task still finishes: 1
import os
import tempfile
import time

import sluice as ray

ray.init(num_cpus=1)
marker = os.path.join(tempfile.mkdtemp(), "ran")


@ray.remote
def occupy(seconds):
    time.sleep(seconds)
    return 1


@ray.remote
def touch(path):
    open(path, "w").close()


first = occupy.remote(0.5)      # holds the only CPU
queued = touch.remote(marker)   # waits for it
ray.cancel(queued)
try:
    ray.get(queued)
except ray.exceptions.TaskCancelledError:
    print("cancelled before it ran:", True)
print("the first task still finishes:", ray.get(first))
assert ray.get(occupy.remote(0)) == 1
assert not os.path.exists(marker)
