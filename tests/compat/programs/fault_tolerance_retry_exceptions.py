# Ray docs: Task fault tolerance, "Retrying failed tasks" (retry_exceptions) --
#   https://docs.ray.io/en/latest/ray-core/fault_tolerance/tasks.html
# Ray's example fails at random; this one fails on the first attempt only (a marker file),
# so its output is fixed.
# Expected output:
# | SUCCESS
# | FAILED AS EXPECTED
# | FAILURE AFTER RETRIES
import os
import tempfile

import sluice as ray


class RandomError(Exception):
    pass


@ray.remote(max_retries=1, retry_exceptions=True)
def fail_once(marker, fail_times):
    if fail_times < 0:
        raise ValueError(f"fail_times must be >= 0, but got: {fail_times}")
    attempts = len(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "a") as f:
        f.write("x")
    if attempts < fail_times:
        raise RandomError("Failed!")
    return 0


workdir = tempfile.mkdtemp()
try:
    ray.get(fail_once.remote(os.path.join(workdir, "a"), 1))
    print("SUCCESS")
except RandomError:
    print("FAILURE")

# Provide the exceptions that we want to retry as an allowlist.
retry_on_exception = fail_once.options(retry_exceptions=[RandomError])
try:
    ray.get(retry_on_exception.remote(os.path.join(workdir, "b"), -1))
except ValueError:
    print("FAILED AS EXPECTED")
else:
    raise RuntimeError("An exception should be raised so this shouldn't be reached.")

# Two failures are one more than max_retries=1 allows.
try:
    ray.get(retry_on_exception.remote(os.path.join(workdir, "c"), 2))
    print("SUCCESS")
except RandomError:
    print("FAILURE AFTER RETRIES")
assert open(os.path.join(workdir, "c")).read() == "xx"
