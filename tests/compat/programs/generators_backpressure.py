# Ray docs: Streaming Generator, "Backpressure" (the _generator_backpressure_num_objects
#   option) -- https://docs.ray.io/en/master/ray-core/internals/streaming-generator.html
# With _generator_backpressure_num_objects=1 the producer pauses at each yield until the
# consumer has taken that item: it never runs more than one item ahead of the consumer.
# Expected output:
# | 0
# | produced so far: [0, 1]
# | paused: True
# | [1, 2, 3, 4, 5, 6, 7, 8, 9]
import sluice as ray
from sluice.util.queue import Empty, Queue


@ray.remote(_generator_backpressure_num_objects=1)
def produce(progress):
    for i in range(10):
        progress.put(i)
        yield i


progress = Queue()
gen = produce.remote(progress)
print(ray.get(next(gen)))

# Taking item 0 lets the producer make item 1; it then waits for the driver to take it.
print("produced so far:", [progress.get(timeout=60), progress.get(timeout=60)])
try:
    progress.get(timeout=2)
    print("paused:", False)
except Empty:
    print("paused:", True)

print([ray.get(ref) for ref in gen])
