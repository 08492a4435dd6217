# Ray docs: Anti-pattern "Returning ray.put() ObjectRefs from a task" --
#   https://docs.ray.io/en/latest/ray-core/patterns/return-ray-put.html
# Returning ray.put(x) gives a ref to a ref; returning x directly gives one ref.
# Expected output:
# | True
# | [0, 1, 2, 3, 4]
import sluice as ray


@ray.remote
def task_with_single_small_return_value_bad():
    small_return_value = 1
    # The value will be stored in the object store
    # and the reference is returned to the caller.
    small_return_value_ref = ray.put(small_return_value)
    return small_return_value_ref


@ray.remote
def task_with_single_small_return_value_good():
    small_return_value = 1
    return small_return_value


assert ray.get(ray.get(task_with_single_small_return_value_bad.remote())) == ray.get(
    task_with_single_small_return_value_good.remote()
)
print(isinstance(ray.get(task_with_single_small_return_value_bad.remote()), ray.ObjectRef))


@ray.remote(num_returns=5)
def task_with_static_multiple_returns_good(n):
    return_values = []
    for i in range(n):
        return_values.append(i)
    return tuple(return_values)


print(ray.get(list(task_with_static_multiple_returns_good.remote(5))))
