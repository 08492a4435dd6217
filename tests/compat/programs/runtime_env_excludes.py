# Ray docs: Environment Dependencies, "API Reference" (working_dir and excludes) --
#   https://docs.ray.io/en/latest/ray-core/handling-dependencies.html#api-reference
# The job's working_dir travels without the files its excludes patterns name. (Ray takes a
# local directory only at the job level, in ray.init.)
# Expected output:
# | ['data.txt', 'notes.py']
# | False
import os
import tempfile

import sluice as ray

working_dir = tempfile.mkdtemp()
for name in ["data.txt", "notes.py", "secret.txt"]:
    with open(os.path.join(working_dir, name), "w") as f:
        f.write(name)
os.makedirs(os.path.join(working_dir, "cache"))
with open(os.path.join(working_dir, "cache", "big.bin"), "w") as f:
    f.write("x")

ray.init(runtime_env={"working_dir": working_dir, "excludes": ["secret.txt", "cache/"]})


@ray.remote
class Lister:
    def files(self):
        return sorted(os.listdir("."))

    def has_secret(self):
        return os.path.exists("secret.txt")


lister = Lister.remote()
print(ray.get(lister.files.remote()))
print(ray.get(lister.has_secret.remote()))
