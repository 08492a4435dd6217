# Ray docs: ray.util.queue.Queue (put/get with block and timeout, put_nowait, get_nowait,
#   full, empty) -- https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.queue.Queue.html
# A full queue raises Full to a put that will not wait, or waits out its timeout; an empty
# one raises Empty likewise.
# Expected output:
# | True
# | Full
# | Full
# | 1 2
# | True
# | Empty
# | Empty
from sluice.util.queue import Empty, Full, Queue

q = Queue(maxsize=2)
q.put_nowait(1)
q.put(2)
print(q.full())

try:
    q.put_nowait(3)
except Full:
    print("Full")
try:
    q.put(3, block=True, timeout=0.5)
except Full:
    print("Full")

print(q.get_nowait(), q.get(timeout=0.5))
print(q.empty())

try:
    q.get_nowait()
except Empty:
    print("Empty")
try:
    q.get(block=True, timeout=0.5)
except Empty:
    print("Empty")
