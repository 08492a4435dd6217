# Ray docs: Pattern "Using tasks for MapReduce" (word count) --
#   https://docs.ray.io/en/latest/ray-core/examples/map_reduce.html
# Expected output:
# | [('the', 4), ('quick', 2), ('fox', 2)]
from collections import Counter

import sluice as ray

corpus = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "the quick red fox",
    "sleeps under the tree",
]
num_partitions = 2


@ray.remote(num_returns=2)
def apply_map(lines, npartitions):
    outputs = [Counter() for _ in range(npartitions)]
    for line in lines:
        for word in line.split():
            outputs[sum(map(ord, word)) % npartitions][word] += 1
    return outputs


@ray.remote
def apply_reduce(*results):
    reduce_results = Counter()
    for res in results:
        reduce_results.update(res)
    return reduce_results


map_results = [apply_map.remote(corpus[i::2], num_partitions) for i in range(2)]
outputs = []
for i in range(num_partitions):
    outputs.append(apply_reduce.remote(*[partition[i] for partition in map_results]))

counts = Counter()
for partial in ray.get(outputs):
    counts.update(partial)
print(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] != "quick", kv[0]))[:3])
