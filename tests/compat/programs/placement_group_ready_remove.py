# Ray docs: Placement Groups, "Create a Placement Group", "Remove Placement Groups" --
#   https://docs.ray.io/en/latest/ray-core/scheduling/placement-group.html
# ready() is an ObjectRef to get or wait on; placement_group_table shows the group's state;
# removing it frees its reserved CPU.
# Expected output:
# | 1 0
# | [{'CPU': 1.0}]
# | PACK CREATED {0: {'CPU': 1.0}}
# | REMOVED
# | 2.0
import sluice as ray
from sluice.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)

ray.init(num_cpus=2)

# Reserve a placement group of 1 bundle that reserves 1 CPU.
pg = placement_group([{"CPU": 1}])

# Wait until placement group is created.
ray.get(pg.ready(), timeout=10)

# You can also use ray.wait.
ready, unready = ray.wait([pg.ready()], timeout=10)
print(len(ready), len(unready))
print(pg.bundle_specs)

table = placement_group_table(pg)
print(table["strategy"], table["state"], table["bundles"])

# This API is asynchronous: poll the table until the group is gone.
remove_placement_group(pg)
while placement_group_table(pg)["state"] != "REMOVED":
    pass
print(placement_group_table(pg)["state"])
while ray.available_resources().get("CPU", 0) != 2:
    pass
print(ray.available_resources()["CPU"])
