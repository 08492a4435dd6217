# Ray docs: Pattern "Using nested tasks to achieve nested parallelism" (quicksort) --
#   https://docs.ray.io/en/latest/ray-core/patterns/nested-tasks.html
# Expected output:
# | True
import random

import sluice as ray


def partition(collection):
    # Use the last element as the pivot
    pivot = collection.pop()
    greater, lesser = [], []
    for element in collection:
        if element > pivot:
            greater.append(element)
        else:
            lesser.append(element)
    return lesser, pivot, greater


@ray.remote
def quick_sort_distributed(collection):
    # Tiny tasks are an antipattern.
    # Thus, in our example we have a "magic number" to
    # toggle when distributed recursion should be used vs
    # when the sorting should be done in place. The rule
    # of thumb is that the duration of an individual task
    # should be at least 1 second.
    if len(collection) <= 2000:
        return sorted(collection)
    else:
        lesser, pivot, greater = partition(collection)
        lesser = quick_sort_distributed.remote(lesser)
        greater = quick_sort_distributed.remote(greater)
        return ray.get(lesser) + [pivot] + ray.get(greater)


random.seed(0)
unsorted = [random.randint(0, 1_000_000) for _ in range(10_000)]
print(ray.get(quick_sort_distributed.remote(unsorted)) == sorted(unsorted))
