"""Actor handles: how any process calls a running actor."""

from __future__ import annotations

from typing import Any, Callable

from sluice.exceptions import InternalError
from sluice.executor import api, context

# How ``handle.method.bind(...)`` makes its graph node: set by ``sluice.dsl.nodes`` when
# it is imported (as ``import sluice`` does); the executor does not import the DSL.
method_binder: Callable[[ActorHandle, str, tuple, dict], Any] | None = None


class ActorHandle:
    """A reference to a running actor; ``handle.method.remote(...)`` calls it.

    Handles pickle, so tasks and other actors can call the same actor. As in Ray,
    an unnamed actor stops once every handle to it in the driver is gone (after
    its pending calls), unless a handle was pickled to another process.
    """

    def __init__(self, actor_id: int, class_name: str, methods: dict[str, dict]):
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        # Counted by the backend of this process (a driver's counts; inside a task the call
        # does nothing); a handle outliving its backend counts nowhere.
        self._runtime = rt = context.current()
        if rt is not None:
            rt.actor_handle_event(actor_id, 1)

    def __del__(self) -> None:
        rt = self.__dict__.get("_runtime")
        if rt is not None:
            try:
                rt.actor_handle_event(self._actor_id, -1)
            except Exception:  # interpreter shutdown
                pass

    def __getattr__(self, name: str) -> ActorMethod:
        if name == "__ray_terminate__":  # Ray's: end the actor after the calls queued before
            return ActorMethod(self, name, {"num_returns": 1})
        if name.startswith("_"):
            raise AttributeError(name)
        opts = self._methods.get(name)
        if opts is None:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}; "
                                 f"its methods are {', '.join(sorted(self._methods)) or 'none'}")
        return ActorMethod(self, name, opts)

    def __reduce__(self):
        rt = self.__dict__.get("_runtime")
        if rt is not None:  # another process may hold it now: never stop the actor early
            rt.actor_handle_event(self._actor_id, 0)
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
        """Call the method; calls from one caller run in the order they were made.

        Arguments that do not fit the method's signature are a TypeError here, in the
        caller (as in Ray), not an error from the actor at ``get``.
        """
        arity = self._options.get("_arity")
        if arity is not None:
            arity.check(f"{self._label}.remote()", args, kwargs)
        rt = api.runtime()
        refs = rt.submit_actor_task(self._handle._actor_id, self._name, self._label,
                                    args, kwargs, self._options)
        n = self._options["num_returns"]
        if n == "streaming":
            from sluice.executor.generators import ObjectRefGenerator

            return ObjectRefGenerator(refs[0], rt)
        return refs[0] if n == 1 else refs

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A call of this method on this running actor as a graph node (Ray's
        ``actor.method.bind(...)``): a Plan of it calls this actor, it creates none."""
        if method_binder is None:
            raise InternalError("sluice.dsl.nodes is not imported, so no graph node can be made; "
                                "import sluice first")
        arity = self._options.get("_arity")
        if arity is not None:
            arity.check(f"{self._label}.bind()", args, kwargs)
        return method_binder(self._handle, self._name, args, kwargs)

    def options(self, **options: Any) -> ActorMethod:
        """A copy with ``num_returns`` changed."""
        unknown = sorted(set(options) - {"num_returns", "name", "_generator_backpressure_num_objects"})
        if unknown:
            raise ValueError(f"{self._label}.options: unknown option(s) {', '.join(unknown)}; "
                             "actor methods take num_returns, name and "
                             "_generator_backpressure_num_objects")
        n = options.get("num_returns", self._options["num_returns"])
        if n != "streaming" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"{self._label}.options: num_returns={n!r} must be an int >= 1 "
                             "or \"streaming\"")
        bp = options.get("_generator_backpressure_num_objects")
        if bp is not None and (isinstance(bp, bool) or not isinstance(bp, int) or bp == 0 or bp < -1):
            raise ValueError(f"{self._label}.options: _generator_backpressure_num_objects={bp!r} "
                             "must be an int >= 1 (or -1 / None for no backpressure)")
        if bp == -1:
            options = {**options, "_generator_backpressure_num_objects": None}
        return ActorMethod(self._handle, self._name, {**self._options, **options})
