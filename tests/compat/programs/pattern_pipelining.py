# Ray docs: Pattern "Using pipelining to increase throughput" --
#   https://docs.ray.io/en/latest/ray-core/patterns/pipelining.html
# A worker actor asks a work-queue actor for the next item while it processes this one.
# Expected output:
# | processed: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
import sluice as ray


@ray.remote
class WorkQueue:
    def __init__(self):
        self.queue = list(range(10))

    def get_work_item(self):
        if self.queue:
            return self.queue.pop(0)
        else:
            return None


@ray.remote
class WorkerWithPipelining:
    def __init__(self, work_queue):
        self.work_queue = work_queue
        self.results = []

    def process(self, work_item):
        self.results.append(work_item * work_item)

    def run(self):
        self.work_item_ref = self.work_queue.get_work_item.remote()

        while True:
            # Get work from the remote queue.
            work_item = ray.get(self.work_item_ref)

            if work_item is None:
                break

            self.work_item_ref = self.work_queue.get_work_item.remote()

            # Do work while we are fetching the next work item.
            self.process(work_item)
        return self.results


work_queue = WorkQueue.remote()
worker_with_pipelining = WorkerWithPipelining.remote(work_queue)
print("processed:", ray.get(worker_with_pipelining.run.remote()))
