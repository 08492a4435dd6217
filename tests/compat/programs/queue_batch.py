# Ray docs: ray.util.queue.Queue.put_nowait_batch / get_nowait_batch / qsize / shutdown --
#   https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.queue.Queue.html
# A batch goes in or comes out whole, or not at all.
# Expected output:
# | 3
# | [1, 2]
# | Empty 1
# | Full 1
# | [3, 4, 5]
import sluice as ray
from sluice.util.queue import Empty, Full, Queue

ray.init()
q = Queue(maxsize=3)
q.put_nowait_batch([1, 2, 3])
print(q.qsize())
print(q.get_nowait_batch(2))

try:
    q.get_nowait_batch(5)
except Empty:
    print("Empty", q.qsize())

try:
    q.put_nowait_batch([4, 5, 6])
except Full:
    print("Full", q.size())

q.put_nowait_batch([4, 5])
print(q.get_nowait_batch(3))
q.shutdown()
