# Ray docs: Task fault tolerance, "Retrying failed tasks" (max_retries after a worker
# crash) -- https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html
# Ray's example crashes at random; this one crashes on the first attempt only (a marker
# file), then always, so its output is fixed.
# Expected output:
# | SUCCESS
# | FAILURE
import os
import tempfile

import sluice as ray


@ray.remote(max_retries=1)
def crash_first_attempt(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(0)
    return 0


@ray.remote(max_retries=0)
def always_crash():
    os._exit(0)


workdir = tempfile.mkdtemp()
try:
    ray.get(crash_first_attempt.remote(os.path.join(workdir, "m")))
    print("SUCCESS")
except ray.exceptions.WorkerCrashedError:
    print("FAILURE")

try:
    ray.get(always_crash.remote())
    print("SUCCESS")
except ray.exceptions.WorkerCrashedError:
    print("FAILURE")
