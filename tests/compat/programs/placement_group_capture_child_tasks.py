# Ray docs: Placement Groups, "[Advanced] Child Tasks and Actors" --
#   https://docs.ray.io/en/latest/ray-core/scheduling/placement-group.html
# With placement_group_capture_child_tasks=True a task's children run in its group too,
# although they name no strategy; the group's 2 CPUs hold both parent and child.
# Expected output:
# | child ran in the group: True
import sluice as ray
from sluice.util.placement_group import get_current_placement_group, placement_group
from sluice.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init(num_cpus=2)

# Create a placement group.
pg = placement_group([{"CPU": 2}])
ray.get(pg.ready())


@ray.remote(num_cpus=1)
def child():
    return get_current_placement_group().id


@ray.remote(num_cpus=1)
def parent():
    # The child task is scheduled to the same placement group as its parent.
    # although it didn't specify the PlacementGroupSchedulingStrategy.
    return ray.get(child.remote())


# Since the child and parent both uses 1 CPUs, the placement group
# bundle {"CPU": 2} is fully occupied.
group_id = ray.get(
    parent.options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_capture_child_tasks=True
        )
    ).remote()
)
print("child ran in the group:", group_id == pg.id)
