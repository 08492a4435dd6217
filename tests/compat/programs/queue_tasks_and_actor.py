# Ray docs: Utility Classes, "Message passing using Ray Queue" and ray.util.queue.Queue --
#   https://docs.ray.io/en/latest/ray-core/actors/actor-utils.html
# A Queue passed to tasks and actors: the driver puts work that consumer tasks take, and
# an actor puts results that the driver takes.
# Expected output:
# | [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
# | ['a', 'b', 'c']
import sluice as ray
from sluice.util.queue import Queue

ray.init()
# You can pass this object around to different tasks/actors
queue = Queue(maxsize=100)


@ray.remote
def consumer(queue):
    return [queue.get(block=True) for _ in range(5)]


consumers = [consumer.remote(queue) for _ in range(2)]

[queue.put(i) for i in range(10)]
got = ray.get(consumers)
print(sorted(got[0] + got[1]))


@ray.remote
class Producer:
    def __init__(self, queue):
        self.queue = queue

    def produce(self, items):
        for item in items:
            self.queue.put(item)


results = Queue()
producer = Producer.remote(results)
producer.produce.remote(["a", "b", "c"])
print([results.get(timeout=60) for _ in range(3)])
