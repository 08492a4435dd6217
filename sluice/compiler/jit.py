"""numba compilation of ``jit=True`` functions and of fused chains of them.

A worker runs a jit stage (``graph.graph["jit_stages"]``, recorded by
``passes/numba_fusion.py``) as one compiled function::

    steps = chain_steps(ops, functions)      # ops in stage order; fn_id -> function
    chain = compile_chain(steps)             # cached: the same steps give the same chain
    result = chain(*first_args)              # first op's arguments, template filled

The wiring of a chain: ``steps[i]`` is ``(fn, extra)`` (a bare callable means
``extra=()``), and ``compile_chain(steps)(*args)`` computes::

    v = fn0(*args, *extra0)
    v = fn1(v, *extra1)
    ...
    return fnN(v, *extraN)

so every function after the first takes the previous result as its *first*
argument, followed by its constant arguments. The constants are baked into the
compiled code (numba freezes globals: numbers, strings, tuples and arrays work;
lists and dicts do not). :func:`chain_steps` builds the steps from a stage's
ops: the first op's whole argument list comes from the caller (``extra0 == ()``);
each later op's template must be ``(Slot(0), *constants)`` with no keyword
arguments (:func:`chained_constants`).

numba is imported lazily: the compiler and the driver never need it. A
missing numba raises ImportError; a function numba cannot compile in nopython
mode raises :class:`JitCompileError` naming the function, on the first call
(numba compiles for the argument types it sees). Both messages say what to do.
Compiled functions are cached per function object for the life of the process:
a worker should load each function once (as it already does per ``fn_id``).
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sluice.compiler.ir import Op, Slot, unpack_template
from sluice.exceptions import InternalError, SluiceError

Step = tuple[Callable[..., Any], tuple]

REMEDY = ("drop jit=True from its options, or rewrite it as numpy-only code numba compiles "
          "in nopython mode")

# Caches live for the process: keys hold the functions (so ids are never reused)
# and the extra constants; the lock makes concurrent first calls build one entry.
_LOCK = threading.Lock()
_FUNCTIONS: dict[int, tuple[Callable, Any]] = {}
_CHAINS: dict[tuple, CompiledChain] = {}


class JitCompileError(SluiceError, TypeError):
    """A ``jit=True`` function that numba cannot compile in nopython mode."""


class CompiledChain:
    """A numba-compiled chain of functions; call it like the first function.

    ``dispatcher`` is the numba dispatcher of the composed function;
    ``functions`` the original Python functions, in order. Errors numba raises
    while compiling become :class:`JitCompileError` naming the function at fault;
    errors raised by the code itself pass through unchanged.
    """

    __slots__ = ("dispatcher", "functions", "_steps", "_numba_error")

    def __init__(self, dispatcher: Any, steps: list[Step]):
        self.dispatcher = dispatcher
        self.functions = tuple(fn for fn, _ in steps)
        self._steps = steps
        self._numba_error = _numba(self.functions[0]).core.errors.NumbaError

    def __call__(self, *args: Any) -> Any:
        try:
            return self.dispatcher(*args)
        except self._numba_error as err:
            raise _diagnose(self._steps, args, err) from err

    def __repr__(self) -> str:
        return f"CompiledChain({' -> '.join(_name(fn) for fn in self.functions)})"


def jit_function(fn: Callable) -> Any:
    """``numba.njit(fn)``, cached per function object (a numba dispatcher).

    A function that is already a numba dispatcher is returned as is. Raises
    :class:`JitCompileError` when ``fn`` is not a Python function numba can take.
    """
    numba = _numba(fn)
    if isinstance(fn, numba.core.dispatcher.Dispatcher):
        return fn
    with _LOCK:
        hit = _FUNCTIONS.get(id(fn))
        if hit is not None:
            return hit[1]
        try:
            compiled = numba.njit(fn)
        except TypeError as err:
            raise JitCompileError(
                f"{_name(fn)} cannot be compiled by numba: {_summary(err)}; {REMEDY}") from err
        _FUNCTIONS[id(fn)] = (fn, compiled)
        return compiled


def compile_chain(steps: Sequence[Step | Callable]) -> CompiledChain:
    """One numba-compiled function running ``steps`` in order (see the module docstring).

    Each step is ``(fn, extra_constants)`` or a bare ``fn``. Cached by the
    functions' identities and the constants: equal steps return the same chain.

    >>> def double(x): return 2 * x
    >>> def add(x, k): return x + k
    >>> compile_chain([double, (add, (1,))])(20)
    41
    """
    normal = [_as_step(s) for s in steps]
    if not normal:
        raise ValueError("compile_chain() needs at least one step, got none")
    key = tuple((id(fn), _constant_key(extra)) for fn, extra in normal)
    with _LOCK:
        chain = _CHAINS.get(key)
    if chain is not None:
        return chain
    members = [jit_function(fn) for fn, _ in normal]
    numba = _numba(normal[0][0])
    source, namespace = _chain_source(normal, members)
    exec(compile(source, f"<sluice chain {key[0][0]:x}>", "exec"), namespace)
    chain = CompiledChain(numba.njit(namespace["_sluice_chain"]), normal)
    with _LOCK:
        # Keep the first chain built for a key, so concurrent callers share its compilation.
        return _CHAINS.setdefault(key, chain)


def chained_constants(op: Op) -> tuple | None:
    """The constants a chained op takes after the previous result, or None if it can't chain.

    An op chains when it reads one input and its template is empty (called with
    that input alone) or ``(Slot(0), *constants)`` with no other Slot and no
    keyword arguments.
    """
    if len(op.inputs) != 1:
        return None
    if not op.template:
        return ()
    args, kwargs = unpack_template(op.template)
    if kwargs or not args or args[0] != Slot(0) or _has_slot(args[1:]):
        return None
    return tuple(args[1:])


def chain_steps(ops: Sequence[Op], functions: Mapping[int, Callable]) -> list[Step]:
    """The steps of a jit stage's ``ops`` (in stage order) for :func:`compile_chain`.

    ``functions`` maps ``fn_id`` to the loaded function. The first op's
    arguments all come from the caller; each later op must chain
    (:func:`chained_constants`).
    """
    steps: list[Step] = []
    for i, op in enumerate(ops):
        extra = () if i == 0 else chained_constants(op)
        if extra is None:
            raise InternalError(f"op {op.id} cannot follow {ops[i - 1].id} in a jit chain: it must "
                             "read only the previous op's value, as its first argument, and take "
                             "no keyword arguments; run numba_fusion to pick jit stages")
        steps.append((functions[op.fn_id], extra))
    return steps


def _chain_source(steps: list[Step], members: list[Any]) -> tuple[str, dict[str, Any]]:
    """Python source of the composed function, and the globals it reads (frozen by numba)."""
    namespace: dict[str, Any] = {}
    lines = ["def _sluice_chain(*args):"]
    for i, ((_, extra), member) in enumerate(zip(steps, members)):
        namespace[f"_fn{i}"] = member
        constants = []
        for j, value in enumerate(extra):
            namespace[f"_k{i}_{j}"] = value
            constants.append(f"_k{i}_{j}")
        first = "*args" if i == 0 else "value"
        lines.append(f"    value = _fn{i}({', '.join([first, *constants])})")
    lines.append("    return value")
    return "\n".join(lines) + "\n", namespace


def _diagnose(steps: list[Step], args: tuple, err: Exception) -> JitCompileError:
    """Find which member numba rejects by running the chain step by step, each compiled alone."""
    numba = _numba(steps[0][0])
    value: Any = None
    for i, (fn, extra) in enumerate(steps):
        call_args = (*args, *extra) if i == 0 else (value, *extra)
        try:
            with warnings.catch_warnings():  # a diagnostic run: numba's deprecation notes are noise
                warnings.simplefilter("ignore", numba.core.errors.NumbaWarning)
                value = jit_function(fn)(*call_args)
        except numba.core.errors.NumbaError as member_err:
            return JitCompileError(f"{_name(fn)} cannot be compiled by numba in nopython mode: "
                                   f"{_summary(member_err)}; {REMEDY}")
    names = " -> ".join(_name(fn) for fn, _ in steps)
    return JitCompileError(
        f"the jit chain {names} compiles function by function but not as one: "
        f"{_summary(err)}; pass constant arguments as numbers, strings, tuples or arrays "
        f"(numba cannot bake lists or dicts into compiled code), or {REMEDY}")


def _numba(fn: Any) -> Any:
    try:
        import numba
    except ImportError as err:
        raise ImportError(f"{_name(fn)} has jit=True but numba is not installed; "
                          "pip install numba, or drop jit=True") from err
    return numba


def _as_step(step: Step | Callable) -> Step:
    if callable(step):
        return step, ()
    if isinstance(step, tuple) and len(step) == 2 and callable(step[0]) and type(step[1]) is tuple:
        return step[0], step[1]
    raise TypeError(f"compile_chain() step {step!r} must be a function or a (function, "
                    "tuple of constant arguments) pair")


def _constant_key(extra: tuple) -> Any:
    """A hashable key for constants that may hold unhashable values (arrays).

    Types are part of the key: ``(1,)`` and ``(1.0,)`` are equal but compile differently.
    """
    try:
        hash(extra)
        return tuple(type(v) for v in extra), extra
    except TypeError:
        import pickle

        return ("pickled", pickle.dumps(extra, protocol=5))


def _has_slot(value: Any) -> bool:
    if type(value) is Slot:
        return True
    if type(value) in (list, tuple):
        return any(_has_slot(v) for v in value)
    if type(value) is dict:
        return any(_has_slot(v) for v in value.values())
    return False


def _summary(err: Exception) -> str:
    """numba's message without its terminal colors and source excerpt, on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines[:3] if not line.startswith("File ")]
    return " ".join(kept).rstrip(".")


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
