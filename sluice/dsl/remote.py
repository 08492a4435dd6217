"""``@sluice.remote`` and remote functions."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from sluice.dsl.options import STREAMING, TASK_DEFAULTS, WORKFLOW_OPTIONS, normalize, workflow_only_error
from sluice.executor import api
from sluice.executor.arity import Arity
from sluice.executor.calls import dumps_function

_UNREAD = object()  # an arity not read yet (None: the function has no readable signature)


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote task, or a class an actor.

    Use bare (``@sluice.remote``) or with options (``@sluice.remote(num_cpus=2)``);
    options are ``num_cpus, num_gpus, resources, max_retries, retry_exceptions,
    num_returns, name`` for functions and ``num_cpus, num_gpus, resources,
    max_restarts, max_concurrency, name`` for classes.
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("@sluice.remote takes keyword options only, e.g. @sluice.remote(num_cpus=2)")
    return lambda target: _make(target, options)


def _make(target: Any, options: dict) -> Any:
    if inspect.isclass(target):
        from sluice.dsl.actor import ActorClass

        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@sluice.remote decorates functions and classes, not {type(target).__name__}")
    return RemoteFunction(target, options)


class RemoteFunction:
    """A function that runs as a task: ``f.remote(...)`` returns ObjectRef(s) at once."""

    def __init__(self, function: Callable, options: dict, _pickled: tuple[int, bytes] | None = None):
        self._function = function
        self._name = getattr(function, "__qualname__", repr(function))
        self._given = dict(options)
        if "num_returns" not in self._given and (inspect.isgeneratorfunction(function)
                                                 or inspect.isasyncgenfunction(function)):
            self._given["num_returns"] = STREAMING  # Ray's default for generator functions
        self._options = normalize("remote function", self._given, TASK_DEFAULTS, f"@remote {self._name}")
        self._options["name"] = self._options["name"] or self._name
        self._workflow_only = _workflow_only(self._given)
        self._pickled = _pickled  # (function id, cloudpickle bytes), made on first use
        self._pickling = False
        self._digest: str | None = None  # stable digest of the code (graph op identity)
        self._arity: Arity | None | object = _UNREAD  # read on the first call, then reused
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self._name} cannot be called directly; use {self._name}.remote(...) "
            f"to run it as a task (or {self._name}.bind(...) to build a graph)")

    def _pickle(self) -> tuple[int, bytes]:
        if self._pickled is None:
            self._pickling = True
            try:
                self._pickled = dumps_function(self._function, f"remote function {self._name}")
            finally:
                self._pickling = False
        return self._pickled

    def _code_digest(self) -> str:
        if self._digest is None:
            from sluice.compiler.ir import code_digest

            self._digest = code_digest(self._function)
        return self._digest

    def _read_arity(self) -> Arity | None:
        arity = self._arity
        if arity is _UNREAD:
            arity = self._arity = Arity.of(self._function, self._name)
        return arity  # type: ignore[return-value]

    def _check_call(self, call: str, args: tuple, kwargs: dict) -> None:
        """TypeError in the caller when ``args``/``kwargs`` do not fit the function (as Ray)."""
        arity = self._arity
        if arity is _UNREAD:
            arity = self._read_arity()
        if arity is not None:
            arity.check(call, args, kwargs)  # type: ignore[union-attr]

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit a task; returns one ObjectRef (a list of them when num_returns > 1).

        Arguments that do not fit the function's signature raise TypeError here, in the
        caller, as in Ray (functions without a readable signature are not checked).
        """
        if self._workflow_only:
            raise workflow_only_error(self._workflow_only, f"{self._name}.remote()",
                                      "tasks started with .remote()")
        self._check_call(f"{self._name}.remote()", args, kwargs)
        fn_id, fn_bytes = self._pickle()
        opts = self._options
        rt = api.runtime()
        refs = rt.submit_task(fn_id, fn_bytes, opts["name"], args, kwargs, opts)
        n = opts["num_returns"]
        if n == STREAMING:
            from sluice.executor.generators import ObjectRefGenerator

            return ObjectRefGenerator(refs[0], rt)
        return refs[0] if n == 1 else refs

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call in a graph: returns a FunctionNode, runs on ``execute()``. Arguments
        are checked against the signature here, as at ``.remote()``."""
        from sluice.dsl.nodes import FunctionNode

        if self._options["num_returns"] == STREAMING:
            raise TypeError(streaming_bind_error(f"{self._name}.bind()"))
        if self._options["max_calls"]:
            raise ValueError(f"{self._name}.bind(): a function with max_calls="
                             f"{self._options['max_calls']} runs with .remote() only; a graph "
                             "fuses its calls with others, so it does not take max_calls")
        self._check_call(f"{self._name}.bind()", args, kwargs)
        return FunctionNode(self, args, kwargs)

    def options(self, **options: Any) -> RemoteFunction:
        """A copy with some options changed: ``f.options(num_cpus=2).remote(x)``. As in
        Ray, ``max_calls`` is set in ``@remote`` only."""
        if "max_calls" in options:
            raise ValueError(f"{self._name}.options(max_calls=...): max_calls is set where the "
                             f"function is declared, @remote(max_calls=N), not per call (as in Ray)")
        copy = RemoteFunction(self._function, {**self._given, **options}, self._pickle())
        copy._digest = self._digest
        copy._arity = self._arity
        return copy

    def __reduce__(self):
        if self._pickling or self._pickled is None:
            # A function that refers to itself: cloudpickle's memo resolves the cycle.
            return (RemoteFunction, (self._function, self._given))
        return (_rebuild, (self._pickled, self._given, self._name, self._code_digest(),
                           self._read_arity()))

    def __repr__(self) -> str:
        return f"<sluice remote function {self._name}>"


def _rebuild(pickled: tuple[int, bytes], given: dict, name: str, digest: str | None = None,
             arity: Arity | None = None) -> RemoteFunction:
    from sluice.executor.calls import load_function as loads

    rf = RemoteFunction.__new__(RemoteFunction)
    rf._pickled = pickled
    rf._pickling = False
    rf._name = name
    rf._given = given
    rf._options = normalize("remote function", given, TASK_DEFAULTS, f"@remote {name}")
    rf._options["name"] = rf._options["name"] or name
    rf._workflow_only = _workflow_only(given)
    rf._function = _LazyFunction(pickled[1], loads)
    rf._digest = digest
    rf._arity = arity  # the lazy function's own signature would accept anything
    return rf


def streaming_bind_error(call: str) -> str:
    """The message for a streaming generator bound into a graph."""
    return (f"{call}: a streaming generator (num_returns=\"streaming\", the default for "
            "generator functions) cannot be a graph node; call it with .remote() and iterate "
            "the ObjectRefGenerator, or bind .options(num_returns=N) for N items")


def _workflow_only(given: dict) -> tuple[str, ...]:
    """The workflow step options among ``given``: ``.remote()`` refuses them, ``.bind()`` keeps them."""
    return tuple(name for name in WORKFLOW_OPTIONS if name in given)


class _LazyFunction:
    """The function inside a rebuilt RemoteFunction, unpickled only if someone needs it."""

    def __init__(self, data: bytes, loads: Callable):
        self._data = data
        self._loads = loads
        self._fn: Callable | None = None

    def __call__(self, *args, **kwargs):
        if self._fn is None:
            self._fn = self._loads(self._data)
        return self._fn(*args, **kwargs)
