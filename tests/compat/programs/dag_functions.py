# Ray docs: Lazy Computation Graphs with the Ray DAG API --
#   https://docs.ray.io/en/latest/ray-core/ray-dag.html
# .bind() builds the graph lazily; execute(input) runs it and returns a ref.
# Expected output:
# | 9
# | 13
import sluice as ray
from sluice.dag import InputNode


@ray.remote
def a(user_input):
    return user_input * 2


@ray.remote
def b(x):
    return x + 1


@ray.remote
def c(x, y):
    return x + y


with InputNode() as dag_input:
    a_ref = a.bind(dag_input)
    dag = c.bind(b.bind(a_ref), a_ref)

# a(2) = 4, b(4) = 5, c(5, 4) = 9
print(ray.get(dag.execute(2)))
# a(3) = 6, b(6) = 7, c(7, 6) = 13
print(ray.get(dag.execute(3)))
