# Ray docs: Lazy Computation Graphs with the Ray DAG API (actors, MultiOutputNode) --
#   https://docs.ray.io/en/latest/ray-core/ray-dag.html
# Expected output:
# | [2, 2]
# | [4, 5]
import sluice as ray
from sluice.dag import InputNode, MultiOutputNode


@ray.remote
class Worker:
    def __init__(self):
        self.forwarded = 0

    def forward(self, input_data: int):
        self.forwarded += 1
        return input_data + 1

    def num_forwarded(self):
        return self.forwarded


worker_a = Worker.remote()
worker_b = Worker.remote()

with InputNode() as inp:
    dag = MultiOutputNode([worker_a.forward.bind(inp), worker_b.forward.bind(inp)])

print(ray.get(dag.execute(1)))
with InputNode() as inp:
    b_out = worker_b.forward.bind(inp)
    chained = MultiOutputNode([worker_a.forward.bind(b_out),
                               worker_b.forward.bind(worker_a.forward.bind(b_out))])
print(ray.get(chained.execute(2)))
assert ray.get(worker_a.num_forwarded.remote()) == 3
