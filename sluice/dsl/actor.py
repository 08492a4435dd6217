"""Actor classes, actor handles and actor methods."""

from __future__ import annotations

import inspect
from typing import Any

from sluice.dsl.options import ACTOR_DEFAULTS, METHOD_DEFAULTS, normalize
from sluice.executor import api
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
        if self._pickled is None:
            self._pickled = dumps_function(self._cls, f"actor class {self._name}")
        cls_id, cls_bytes = self._pickled
        rt = api.runtime()
        actor_id = rt.new_actor_id()
        options = {**self._options, "class_name": self._name, "_methods": self._methods}
        rt.create_actor(actor_id, cls_id, cls_bytes, self._name, args, kwargs, options)
        return ActorHandle(actor_id, self._name, self._methods)

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


class ActorHandle:
    """A reference to a running actor; ``handle.method.remote(...)`` calls it.

    Handles pickle, so tasks and other actors can call the same actor.
    """

    def __init__(self, actor_id: int, class_name: str, methods: dict[str, dict]):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        opts = self._methods.get(name)
        if opts is None:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}; "
                                 f"its methods are {', '.join(sorted(self._methods)) or 'none'}")
        return ActorMethod(self, name, opts)

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._class_name, self._methods))

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {self._actor_id:x})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)


class ActorMethod:
    """One method of an actor handle."""

    __slots__ = ("_handle", "_name", "_options", "_label")

    def __init__(self, handle: ActorHandle, name: str, options: dict):
        self._handle = handle
        self._name = name
        self._options = options
        self._label = f"{handle._class_name}.{name}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor method {self._label} cannot be called directly; use "
                        f"handle.{self._name}.remote(...) to call it on the actor")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method; calls from one caller run in the order they were made."""
        refs = api.runtime().submit_actor_task(self._handle._actor_id, self._name, self._label,
                                               args, kwargs, self._options)
        return refs[0] if self._options["num_returns"] == 1 else refs

    def options(self, **options: Any) -> ActorMethod:
        """A copy with ``num_returns`` changed."""
        merged = normalize("actor method", {k: v for k, v in {**self._options, **options}.items()
                                            if k in METHOD_DEFAULTS}, METHOD_DEFAULTS, self._label)
        return ActorMethod(self._handle, self._name, merged)


def get_actor(name: str) -> ActorHandle:
    """The handle of the actor started with ``options(name=name)``; ValueError if none."""
    found = api.runtime().lookup("actor", name)
    if found is None:
        raise ValueError(f"no actor named {name!r} is alive; start one with "
                         f"Cls.options(name={name!r}).remote()")
    actor_id, class_name, methods = found
    return ActorHandle(actor_id, class_name, methods)
