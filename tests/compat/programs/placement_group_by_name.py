# Ray docs: Placement Groups, "Get a Placement Group with a Name" and "[Advanced] Detached
#   Placement Group" -- https://docs.ray.io/en/latest/ray-core/scheduling/placement-group.html
# A named group is found again with ray.util.get_placement_group; one never made is not.
# Expected output:
# | True
# | [{'CPU': 1.0}, {'CPU': 1.0}]
# | ValueError
# | detached CREATED
import sluice as ray
from sluice.util.placement_group import placement_group, placement_group_table, remove_placement_group

ray.init(num_cpus=2)

# Create a placement group with a global name.
pg = placement_group([{"CPU": 1}, {"CPU": 1}], name="global_name")
ray.get(pg.ready())

# Retrieve a placement group with a global name.
same = ray.util.get_placement_group("global_name")
print(same.id == pg.id)
print(same.bundle_specs)

try:
    ray.util.get_placement_group("no_such_group")
except ValueError:
    print("ValueError")
remove_placement_group(pg)

# Create a detached placement group that survives even after the job terminates.
pg = placement_group([{"CPU": 1}], lifetime="detached", name="detached_group")
ray.get(pg.ready())
print("detached", placement_group_table(ray.util.get_placement_group("detached_group"))["state"])
remove_placement_group(pg)
