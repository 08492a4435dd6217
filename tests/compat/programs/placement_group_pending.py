# Ray docs: Placement Groups, "Create a Placement Group" (a group that cannot be created
#   yet) and ray.util.placement_group.PlacementGroup.wait --
#   https://docs.ray.io/en/latest/ray-core/scheduling/placement-group.html
# A group that does not fit while another holds the CPUs stays pending: get of ready() and
# wait() time out. Once the other group is removed it is created.
# Expected output:
# | GetTimeoutError
# | False
# | True
import sluice as ray
from sluice.util.placement_group import placement_group, remove_placement_group

ray.init(num_cpus=2)

first = placement_group([{"CPU": 2}])
ray.get(first.ready())

second = placement_group([{"CPU": 1}])
try:
    ray.get(second.ready(), timeout=1)
except ray.exceptions.GetTimeoutError:
    print("GetTimeoutError")
print(second.wait(timeout_seconds=1))

remove_placement_group(first)
print(second.wait(timeout_seconds=60))
