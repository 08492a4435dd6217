# Ray docs: ray.nodes() API reference -- https://docs.ray.io/en/latest/ray-core/api/doc/ray.nodes.html
# One dict per node: NodeID, Alive, NodeManagerAddress, Resources.
# Expected output:
# | 1 True 2.0
import sluice as ray

ray.init(num_cpus=2)
nodes = ray.nodes()
node = nodes[0]
print(len(nodes), node["Alive"], float(node["Resources"]["CPU"]))
assert isinstance(node["NodeID"], str) and node["NodeID"]
assert isinstance(node["NodeManagerAddress"], str)
