# Ray docs: Placement Groups, "Schedule Tasks and Actors to Placement Groups (Use Reserved
#   Resources)" -- https://docs.ray.io/en/latest/ray-core/scheduling/placement-group.html
# An actor and a task scheduled into a group's bundles run inside it; a task outside it
# sees no group.
# Expected output:
# | actor in group: True
# | task in group: True
# | outside: None
import sluice as ray
from sluice.util.placement_group import get_current_placement_group, placement_group
from sluice.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init(num_cpus=2)

# Reserve 2 bundles that have to be packed on the same node.
pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
ray.get(pg.ready())


@ray.remote(num_cpus=1)
class Actor:
    def group(self):
        return get_current_placement_group()


@ray.remote(num_cpus=1)
def task():
    return get_current_placement_group()


# Create an actor on the first bundle.
actor = Actor.options(
    scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=pg,
        placement_group_bundle_index=0,
    )
).remote()
print("actor in group:", ray.get(actor.group.remote()).id == pg.id)

# Run a task on the second bundle.
ref = task.options(
    scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=pg,
        placement_group_bundle_index=1,
    )
).remote()
print("task in group:", ray.get(ref).id == pg.id)

# Both CPUs are reserved by the group, so a task outside it asks for none.
print("outside:", ray.get(task.options(num_cpus=0).remote()))
