# Ray docs: Placement Groups, "Create a Placement Group" (a bundle no node can hold) --
#   https://docs.ray.io/en/latest/ray-core/scheduling/placement-group.html
# A group with a {"GPU": 2} bundle on a node without GPUs is never created: getting its
# ready() raises (Ray: GetTimeoutError after the timeout; sluice: at once, naming the
# bundle -- see test_differences.py).
# Expected output:
# | Cannot create a placement group because {'GPU': 2} bundle cannot be created.
import sluice as ray
from sluice.util.placement_group import placement_group

ray.init(num_cpus=2)

# Cannot create this placement group because we
# cannot create a {"GPU": 2} bundle.
pending_pg = placement_group([{"CPU": 1}, {"GPU": 2}])
# This raises the timeout exception!
try:
    ray.get(pending_pg.ready(), timeout=5)
except Exception:
    print(
        "Cannot create a placement group because "
        "{'GPU': 2} bundle cannot be created."
    )
