# Ray docs: Monte Carlo Estimation of pi (a progress actor and sampling tasks) --
#   https://docs.ray.io/en/latest/ray-core/examples/monte_carlo_pi.html
# Expected output:
# | progress: 1.0
# | pi is close: True
import math
import random
import time

import sluice as ray


@ray.remote
class ProgressActor:
    def __init__(self, total_num_samples: int):
        self.total_num_samples = total_num_samples
        self.num_samples_completed_per_task = {}

    def report_progress(self, task_id: int, num_samples_completed: int) -> None:
        self.num_samples_completed_per_task[task_id] = num_samples_completed

    def get_progress(self) -> float:
        return sum(self.num_samples_completed_per_task.values()) / self.total_num_samples


@ray.remote
def sampling_task(num_samples: int, task_id: int, progress_actor: ray.actor.ActorHandle) -> int:
    rng = random.Random(task_id)
    num_inside = 0
    for i in range(num_samples):
        x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
        if math.hypot(x, y) <= 1:
            num_inside += 1

        # Report progress every 10_000 samples.
        if (i + 1) % 10_000 == 0:
            # This is async.
            progress_actor.report_progress.remote(task_id, i + 1)

    # Report the final progress.
    progress_actor.report_progress.remote(task_id, num_samples)
    return num_inside


NUM_SAMPLING_TASKS = 4
NUM_SAMPLES_PER_TASK = 50_000
TOTAL_NUM_SAMPLES = NUM_SAMPLING_TASKS * NUM_SAMPLES_PER_TASK

progress_actor = ProgressActor.remote(TOTAL_NUM_SAMPLES)
results = [
    sampling_task.remote(NUM_SAMPLES_PER_TASK, i, progress_actor)
    for i in range(NUM_SAMPLING_TASKS)
]
# Query progress periodically.
while True:
    progress = ray.get(progress_actor.get_progress.remote())
    if progress == 1:
        break
    time.sleep(0.05)
print("progress:", progress)

total_num_inside = sum(ray.get(results))
pi = (total_num_inside * 4) / TOTAL_NUM_SAMPLES
print("pi is close:", abs(pi - math.pi) < 0.05)
