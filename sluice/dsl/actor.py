"""Actor classes, actor handles and actor methods."""

from __future__ import annotations

import inspect
from typing import Any

from sluice.dsl.options import ACTOR_DEFAULTS, METHOD_DEFAULTS, normalize
from sluice.executor import api
from sluice.executor.actor_handle import ActorHandle
from sluice.executor.arity import Arity
from sluice.executor.calls import dumps_function
from sluice.executor.runtime_context import current_namespace

_UNREAD = object()  # the constructor's arity, not read yet


class ActorClass:
    """A class decorated with ``@sluice.remote``: ``Cls.remote(...)`` starts an actor."""

    def __init__(self, cls: type, options: dict, _pickled: tuple[int, bytes] | None = None,
                 _methods: dict[str, dict] | None = None):
        self._cls = cls
        self._name = cls.__qualname__
        self._given = dict(options)
        self._options = normalize("actor class", options, ACTOR_DEFAULTS, f"@remote class {self._name}")
        self._methods = _methods if _methods is not None else _method_table(cls)
        self._arity: Arity | None | object = _UNREAD
        self._pickled = _pickled
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor class {self._name} cannot be instantiated directly; use "
                        f"{self._name}.remote(...) to start an actor")

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Start the actor in its own process; returns its handle at once. Arguments that
        do not fit the constructor raise TypeError here, in the caller."""
        self._check_call(f"{self._name}.remote()", args, kwargs)
        cls_id, cls_bytes = self._pickle()
        rt = api.runtime()
        options = {**self._options, "class_name": self._name, "_methods": self._methods}
        name = options["name"]
        if name is not None and options["namespace"] is None:
            options["namespace"] = current_namespace()
        if name is not None and options["get_if_exists"]:
            found = rt.get_actor(name, options["namespace"])
            if found is not None:
                return ActorHandle(found.actor_id, found.class_name, found.methods)
        # (Made by another caller since the look above: the runtime sends this id's calls to it.)
        actor_id = rt.new_actor_id()
        rt.create_actor(actor_id, cls_id, cls_bytes, self._name, args, kwargs, options)
        return ActorHandle(actor_id, self._name, self._methods)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """An actor as a graph node (created once per Plan); bind its methods on it."""
        from sluice.dsl.nodes import ClassNode

        self._check_call(f"{self._name}.bind()", args, kwargs)
        return ClassNode(self, args, kwargs)

    def _check_call(self, call: str, args: tuple, kwargs: dict) -> None:
        """TypeError in the caller when the constructor cannot take ``args``/``kwargs``."""
        arity = self._read_arity()
        if arity is not None:
            arity.check(call, args, kwargs)

    def _read_arity(self) -> Arity | None:
        if self._arity is _UNREAD:
            self._arity = Arity.of(self._cls, self._name)
        return self._arity  # type: ignore[return-value]

    def __getstate__(self) -> dict:
        # The arity travels read: the _UNREAD sentinel would not be itself after unpickling
        # (an actor class used inside a task or actor, e.g. an actor that starts actors).
        state = dict(self.__dict__)
        state["_arity"] = self._read_arity()
        return state

    def _pickle(self) -> tuple[int, bytes]:
        if self._pickled is None:
            self._pickled = dumps_function(self._cls, f"actor class {self._name}")
        return self._pickled

    def options(self, **options: Any) -> ActorClass:
        """A copy with some options changed: ``Counter.options(name="c").remote()``."""
        copy = ActorClass(self._cls, {**self._given, **options}, self._pickled, self._methods)
        copy._arity = self._arity
        return copy

    def __repr__(self) -> str:
        return f"<sluice actor class {self._name}>"


def _method_table(cls: type) -> dict[str, dict]:
    """Each method's options, and under ``_arity`` what arguments a call of it takes."""
    table = {}
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("__") and name != "__call__":
            continue
        opts = getattr(member, "__sluice_method_options__", {})
        if "num_returns" not in opts and (inspect.isgeneratorfunction(member)
                                          or inspect.isasyncgenfunction(member)):
            opts = {**opts, "num_returns": "streaming"}  # Ray's default for generator methods
        label = f"{cls.__qualname__}.{name}"
        table[name] = normalize("actor method", opts, METHOD_DEFAULTS, label)
        table[name]["_arity"] = method_arity(cls, name, member, label)
    return table


def method_arity(cls: type, name: str, member: Any, label: str) -> Arity | None:
    """What a call of method ``name`` takes on an instance (``self`` is not passed; a
    staticmethod's parameters are all the caller's, a classmethod read off the class is
    bound already). None for other callables: their calls are not checked."""
    if inspect.ismethod(member):  # a classmethod, bound to the class
        return Arity.of(member, label)
    if not inspect.isfunction(member):
        return None
    is_static = isinstance(inspect.getattr_static(cls, name, None), staticmethod)
    return Arity.of(member, label, drop_first=not is_static)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the actor started with ``options(name=name)`` in ``namespace`` (None: the
    current job's namespace); ValueError if none is alive."""
    if not isinstance(name, str):
        raise TypeError(f"get_actor({name!r}): give the actor's name, the str it was started "
                        "with as Cls.options(name=...).remote()")
    if not name:
        raise ValueError("get_actor(''): give the actor's name, the non-empty str it was started "
                         "with as Cls.options(name=...).remote()")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError(f"get_actor({name!r}, namespace={namespace!r}): give a non-empty str, "
                         "or None for the current job's namespace")
    where = namespace if namespace is not None else current_namespace()
    found = api.runtime().get_actor(name, where)
    if found is None:
        raise ValueError(f"no actor named {name!r} is alive in namespace {where!r}; start one with "
                         f"Cls.options(name={name!r}).remote(), or pass the namespace it was "
                         "started in (sluice.init(namespace=...) or options(namespace=...))")
    return ActorHandle(found.actor_id, found.class_name, found.methods)
