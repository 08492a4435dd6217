# Ray docs: ray.runtime_context.RuntimeContext (get_job_id, get_node_id, get_task_id,
#   get_actor_id, get_worker_id, was_current_actor_reconstructed) --
#   https://docs.ray.io/en/latest/ray-core/api/doc/ray.runtime_context.RuntimeContext.html
# The ids are hex strings; the driver and its tasks share a job and (here) a node; a task
# has no actor id, an actor has its own.
# Expected output:
# | job id is hex: True
# | driver actor id: None
# | same job and node: True True
# | task: actor id None, task id set: True
# | actor id set: True, distinct: True, reconstructed: False
# | distinct task ids: True
import string

import sluice as ray

ray.init()


def is_hex(value):
    return isinstance(value, str) and value != "" and set(value) <= set(string.hexdigits)


context = ray.get_runtime_context()
print("job id is hex:", is_hex(context.get_job_id()))
print("driver actor id:", context.get_actor_id())
assert is_hex(context.get_worker_id())


@ray.remote
def task():
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id(), context.get_actor_id(), context.get_task_id()


@ray.remote
class Actor:
    def ids(self):
        context = ray.get_runtime_context()
        return context.get_actor_id(), context.was_current_actor_reconstructed


job_id, node_id, actor_id, task_id = ray.get(task.remote())
print("same job and node:", job_id == context.get_job_id(), node_id == context.get_node_id())
print(f"task: actor id {actor_id}, task id set: {is_hex(task_id)}")

(first, reconstructed), (second, _) = ray.get([Actor.remote().ids.remote(), Actor.remote().ids.remote()])
print(f"actor id set: {is_hex(first)}, distinct: {first != second}, reconstructed: {reconstructed}")
print("distinct task ids:", ray.get(task.remote())[3] != task_id)
