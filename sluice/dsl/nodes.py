"""Lazy graph nodes: what ``.bind()`` returns. Nothing runs until ``execute()``.

The nodes are thin, picklable records of a call (what, with which arguments);
the compiler turns a graph of them into plain IR. Nodes nested inside list,
tuple and dict arguments are found too.
"""

from __future__ import annotations

import threading
from typing import Any

from sluice.executor import actor_handle

# Makes a node's first execute() compile once when threads race to it: two Plans
# of one graph would each create the graph's actors.
_compile_lock = threading.Lock()

_SELECT_ITEM, _SELECT_ATTR = "item", "attr"


class DAGNode:
    """A node of a lazy graph. ``execute`` runs the compiled Plan (cached on the node)."""

    def __init__(self, args: tuple = (), kwargs: dict | None = None):
        self._bound_args = tuple(args)
        self._bound_kwargs = dict(kwargs or {})
        self._plan: Any = None

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run the graph on ``args``/``kwargs`` (fed to its InputNode); returns ObjectRef(s).

        The graph is compiled once; later calls reuse the same Plan and its actors.
        Arguments the graph cannot read (see :class:`InputNode`) raise here, before
        any task starts.
        """
        plan = self._plan
        if plan is None:
            with _compile_lock:
                if self._plan is None:
                    self._plan = self.compile()
                plan = self._plan
        return plan.execute(*args, **kwargs)

    def compile(self, optimize: bool = True) -> Any:
        """The physical :class:`~sluice.compiler.plan.Plan` of the graph ending here."""
        return compile(self, optimize=optimize)

    def experimental_compile(self, optimize: bool = True) -> Any:
        """Ray's name for ``compile()``: the same Plan (sluice compiles every graph)."""
        return self.compile(optimize=optimize)

    def visualize(self, path: str | None = None, optimize: bool = True) -> Any:
        """The graph's logical view (one node per op) as a ``graphviz.Digraph``."""
        return self.compile(optimize=optimize).visualize(path, level="logical")

    def children(self) -> list[DAGNode]:
        """The nodes this node reads, in argument order (duplicates removed)."""
        found: list[DAGNode] = []
        seen: set[int] = set()
        for value in _walk((self._bound_args, self._bound_kwargs)):
            if id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        return found

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_plan"] = None  # a Plan's actors belong to this process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self!r} is a graph node; run the graph with .execute(...)")


def _walk(value: Any):
    """Yield every DAGNode inside ``value`` (lists, tuples, dicts), iteratively.

    Each container is looked into once: one that holds itself (``x.append(x)``) or
    appears twice ends the walk instead of repeating it.
    """
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, DAGNode):
            yield item
        elif type(item) in (list, tuple, dict):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(reversed(item if type(item) is not dict else list(item.values())))


class FunctionNode(DAGNode):
    """A remote function bound to arguments: ``f.bind(x)``."""

    def __init__(self, remote_function: Any, args: tuple, kwargs: dict):
        super().__init__(args, kwargs)
        self._remote_function = remote_function

    def __repr__(self) -> str:
        return f"FunctionNode({self._remote_function._name})"


class ClassNode(DAGNode):
    """An actor as a graph node: ``Cls.bind(...)``; ``node.method.bind(...)`` calls it."""

    def __init__(self, actor_class: Any, args: tuple, kwargs: dict):
        super().__init__(args, kwargs)
        self._actor_class = actor_class

    def __getattr__(self, name: str) -> _MethodBinder:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._actor_class._methods
        if name not in methods:
            raise AttributeError(f"actor {self._actor_class._name} has no method {name!r}; "
                                 f"its methods are {', '.join(sorted(methods)) or 'none'}")
        return _MethodBinder(self, name)

    def __repr__(self) -> str:
        return f"ClassNode({self._actor_class._name})"


class _MethodBinder:
    """``class_node.method``: call ``.bind(...)`` on it."""

    def __init__(self, class_node: ClassNode, name: str):
        self._class_node = class_node
        self._name = name

    def bind(self, *args: Any, **kwargs: Any) -> ClassMethodNode:
        """A call of this method in the graph (its arguments checked against the method's)."""
        actor_class = self._class_node._actor_class
        arity = actor_class._methods[self._name].get("_arity")
        if arity is not None:
            arity.check(f"{actor_class._name}.{self._name}.bind()", args, kwargs)
        return ClassMethodNode(self._class_node, self._name, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._class_node._actor_class._name}.{self._name} of a graph node "
                        "cannot run eagerly; use .bind(...) and execute the graph")


class ClassMethodNode(DAGNode):
    """A method call on an actor node: ``actor.method.bind(x)``."""

    def __init__(self, class_node: ClassNode, method: str, args: tuple, kwargs: dict):
        super().__init__(args, kwargs)
        self._class_node = class_node
        self._method = method

    def children(self) -> list[DAGNode]:
        return [self._class_node] + [c for c in super().children() if c is not self._class_node]

    def __repr__(self) -> str:
        return f"ClassMethodNode({_actor_name(self._class_node)}.{self._method})"


class ActorHandleNode(DAGNode):
    """An actor that already runs, as a graph node: ``handle.method.bind(x)`` calls it.

    Unlike a :class:`ClassNode`, a Plan of it creates no actor; its calls go to the
    running actor, after the calls made on the handle before. The graph holds the handle
    pickled, so (as after passing a handle to a task) the actor no longer stops when the
    driver drops its handles: ``sluice.kill`` it when done.
    """

    def __init__(self, handle: Any):
        super().__init__((), {})
        self._handle = handle

    @property
    def _methods(self) -> dict[str, dict]:
        return self._handle._methods

    @property
    def _name(self) -> str:
        return self._handle._class_name

    def __repr__(self) -> str:
        return f"ActorHandleNode({self._handle!r})"


def _bind_running_actor(handle: Any, method: str, args: tuple, kwargs: dict) -> ClassMethodNode:
    """``handle.method.bind(...)``: the method node on the running actor ``handle``."""
    return ClassMethodNode(ActorHandleNode(handle), method, args, kwargs)


actor_handle.method_binder = _bind_running_actor


class InputNode(DAGNode):
    """The graph's input: what ``execute(...)`` is called with.

    Use it as a context manager. As in Ray, with one positional argument (and no
    keywords) the node is that value, and ``inp[k]``/``inp.k`` read an item or attribute
    of it; with several arguments ``inp[0]``/``inp[1]`` select positional ones and
    ``inp["k"]``/``inp.k`` keyword ones.
    ``execute()`` checks what it is given against what the graph reads before any
    task starts: the bare node given no argument or several, or a selector that
    finds nothing, raises there, naming both.
    """

    def __enter__(self) -> InputNode:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getitem__(self, key: Any) -> InputAttributeNode:
        return InputAttributeNode(self, (_SELECT_ITEM, key))

    def __getattr__(self, name: str) -> InputAttributeNode:
        if name.startswith("_"):
            raise AttributeError(name)
        return InputAttributeNode(self, (_SELECT_ATTR, name))

    def __repr__(self) -> str:
        return "InputNode()"


class InputAttributeNode(DAGNode):
    """A part of the input: ``inp[0]``, ``inp["k"]`` or ``inp.k``."""

    def __init__(self, input_node: InputNode, key: tuple):
        super().__init__((input_node,), {})
        self._key = key

    @property
    def label(self) -> str:
        kind, key = self._key
        return f"input[{key!r}]" if kind == _SELECT_ITEM else f"input.{key}"

    def __repr__(self) -> str:
        return f"InputAttributeNode({self.label})"


class MultiOutputNode(DAGNode):
    """Several outputs: ``execute()`` returns a list of ObjectRefs, one per node."""

    def __init__(self, outputs: list[DAGNode] | tuple[DAGNode, ...]):
        outputs = list(outputs)
        bad = [o for o in outputs if not isinstance(o, DAGNode)]
        if bad:
            raise TypeError(f"MultiOutputNode takes graph nodes, got {type(bad[0]).__name__} "
                            f"{bad[0]!r:.60}; bind a function to make a node")
        super().__init__(tuple(outputs), {})

    def __repr__(self) -> str:
        return f"MultiOutputNode({len(self._bound_args)})"


def _actor_name(node: ClassNode | ActorHandleNode) -> str:
    return node._name if isinstance(node, ActorHandleNode) else node._actor_class._name


def compile(dag: DAGNode, optimize: bool = True) -> Any:  # noqa: A001 (the public name)
    """The physical Plan of the graph ending at ``dag`` (``sluice.compile``).

    ``optimize=False`` skips CSE and fusion: one stage per node. On a backend of
    several nodes, a stage that reads a bound ObjectRef is placed on the node
    holding its largest one (see ``sluice.compiler.passes.locality``).
    """
    from sluice.compiler.pipeline import compile_graph
    from sluice.dsl.placement import cluster_view
    from sluice.dsl.to_graph import build_graph

    graph = build_graph(dag)
    return compile_graph(graph, optimize=optimize, cluster=cluster_view(graph))
