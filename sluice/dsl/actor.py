"""Actor classes, actor handles and actor methods."""

from __future__ import annotations

import inspect
from typing import Any

from sluice.dsl.options import ACTOR_DEFAULTS, METHOD_DEFAULTS, normalize
from sluice.executor import api
from sluice.executor.actor_handle import ActorHandle
from sluice.executor.calls import dumps_function


class ActorClass:
    """A class decorated with ``@sluice.remote``: ``Cls.remote(...)`` starts an actor."""

    def __init__(self, cls: type, options: dict, _pickled: tuple[int, bytes] | None = None):
        self._cls = cls
        self._name = cls.__qualname__
        self._given = dict(options)
        self._options = normalize("actor class", options, ACTOR_DEFAULTS, f"@remote class {self._name}")
        self._methods = _method_table(cls)
        self._pickled = _pickled
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor class {self._name} cannot be instantiated directly; use "
                        f"{self._name}.remote(...) to start an actor")

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Start the actor in its own process; returns its handle at once."""
        cls_id, cls_bytes = self._pickle()
        rt = api.runtime()
        actor_id = rt.new_actor_id()
        options = {**self._options, "class_name": self._name, "_methods": self._methods}
        rt.create_actor(actor_id, cls_id, cls_bytes, self._name, args, kwargs, options)
        return ActorHandle(actor_id, self._name, self._methods)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """An actor as a graph node (created once per Plan); bind its methods on it."""
        from sluice.dsl.nodes import ClassNode

        return ClassNode(self, args, kwargs)

    def _pickle(self) -> tuple[int, bytes]:
        if self._pickled is None:
            self._pickled = dumps_function(self._cls, f"actor class {self._name}")
        return self._pickled

    def options(self, **options: Any) -> ActorClass:
        """A copy with some options changed: ``Counter.options(name="c").remote()``."""
        return ActorClass(self._cls, {**self._given, **options}, self._pickled)

    def __repr__(self) -> str:
        return f"<sluice actor class {self._name}>"


def _method_table(cls: type) -> dict[str, dict]:
    table = {}
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("__") and name != "__call__":
            continue
        opts = getattr(member, "__sluice_method_options__", {})
        table[name] = normalize("actor method", opts, METHOD_DEFAULTS, f"{cls.__qualname__}.{name}")
    return table


def get_actor(name: str) -> ActorHandle:
    """The handle of the actor started with ``options(name=name)``; ValueError if none."""
    found = api.runtime().get_actor(name)
    if found is None:
        raise ValueError(f"no actor named {name!r} is alive; start one with "
                         f"Cls.options(name={name!r}).remote()")
    return ActorHandle(found.actor_id, found.class_name, found.methods)
