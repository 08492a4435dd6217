"""``import sluice.dag`` / ``from sluice.dag import InputNode``: the graph nodes under Ray's
``ray.dag`` import path (they live in ``sluice.dsl.nodes``)."""

from sluice.dsl.nodes import (
    ActorHandleNode,
    ClassMethodNode,
    ClassNode,
    DAGNode,
    FunctionNode,
    InputAttributeNode,
    InputNode,
    MultiOutputNode,
)

__all__ = [
    "ActorHandleNode",
    "ClassMethodNode",
    "ClassNode",
    "DAGNode",
    "FunctionNode",
    "InputAttributeNode",
    "InputNode",
    "MultiOutputNode",
]
