# Ray docs: Pattern "Using asyncio to run actor methods concurrently" --
#   https://docs.ray.io/en/latest/ray-core/patterns/concurrent-operations-async-actor.html
# A sync actor stuck in a loop cannot answer; an async actor that awaits refs can.
# Ray's example waits 5 s for the timeout; this one waits 0.5 s.
# Expected output:
# | get_num_executed_tasks didn't finish in time
# | the async actor answers: True
import time

import sluice as ray


@ray.remote
class TaskStore:
    def get_next_task(self):
        return "task"


@ray.remote
class TaskExecutor:
    def __init__(self, task_store):
        self.task_store = task_store
        self.num_executed_tasks = 0

    def run(self):
        while True:
            task = ray.get(self.task_store.get_next_task.remote())
            self._execute_task(task)

    def _execute_task(self, task):
        self.num_executed_tasks = self.num_executed_tasks + 1

    def get_num_executed_tasks(self):
        return self.num_executed_tasks


task_store = TaskStore.remote()
task_executor = TaskExecutor.remote(task_store)
task_executor.run.remote()
try:
    # This times out: run occupies the actor's only thread.
    ray.get(task_executor.get_num_executed_tasks.remote(), timeout=0.5)
except ray.exceptions.GetTimeoutError:
    print("get_num_executed_tasks didn't finish in time")


@ray.remote
class AsyncTaskExecutor:
    def __init__(self, task_store):
        self.task_store = task_store
        self.num_executed_tasks = 0

    async def run(self):
        while True:
            # await instead of ray.get(): the loop runs other calls meanwhile.
            task = await self.task_store.get_next_task.remote()
            self._execute_task(task)

    def _execute_task(self, task):
        self.num_executed_tasks = self.num_executed_tasks + 1

    def get_num_executed_tasks(self):
        return self.num_executed_tasks


async_task_executor = AsyncTaskExecutor.remote(task_store)
async_task_executor.run.remote()
deadline = time.time() + 60
while ray.get(async_task_executor.get_num_executed_tasks.remote()) == 0:
    assert time.time() < deadline
    time.sleep(0.01)
print("the async actor answers:", True)
ray.kill(task_executor)
