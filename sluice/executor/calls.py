"""How a call's function and arguments are packed for a worker, and unpacked there.

Top-level ObjectRef arguments become dependencies: the worker receives their
values, not the refs. Refs nested inside containers travel as refs (Ray's rule).
Functions are content-addressed: the id of a function is a hash of its pickle,
so the driver and every worker agree on it without coordination.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import types
from typing import Any, Callable

import cloudpickle

from sluice.exceptions import SerializationError
from sluice.executor.object_ref import ObjectRef
from sluice.executor.protocol import INLINE_MAX
from sluice.store.serialization import loads, serialize, to_bytes

_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
LAYOUT_MAGIC = to_bytes(serialize(None))[:4]


def dumps_function(fn: Any, name: str) -> tuple[int, bytes]:
    """Pickle a function or class once; returns ``(content id, bytes)``.

    The source file travels beside the pickle: cloudpickle writes code by value
    with a placeholder file name, and :func:`load_function` puts the real one
    back so remote tracebacks show the user's source lines.
    """
    try:
        data = cloudpickle.dumps((fn, _source_file(fn)), protocol=5)
    except Exception as err:
        raise SerializationError(
            f"{name} cannot be pickled to send to workers ({type(err).__name__}: {err}); "
            "move what it captures (locks, sockets, open files) into the function body"
        ) from err
    return function_id(data), data


class ExceptionTypes(tuple):
    """The exception types of ``retry_exceptions=[...]``: a tuple that pickles its types by
    value (cloudpickle), so a type defined in the driver's ``__main__`` reaches the worker
    that checks it (plain pickle would look it up there by name, and fail)."""

    __slots__ = ()

    def __reduce__(self):
        return (_load_exception_types, (cloudpickle.dumps(tuple(self), protocol=5),))


def _load_exception_types(data: bytes) -> ExceptionTypes:
    return ExceptionTypes(pickle.loads(data))


def load_function(data: bytes) -> Any:
    """The function or class :func:`dumps_function` packed, with its source file restored."""
    fn, filename = pickle.loads(data)
    if filename:
        _restore_filename(fn, filename)
    return fn


def _source_file(fn: Any) -> str | None:
    code = getattr(fn, "__code__", None)
    if code is not None:
        return code.co_filename
    module = sys.modules.get(getattr(fn, "__module__", ""), None)
    return getattr(module, "__file__", None)


def _restore_filename(obj: Any, filename: str) -> None:
    targets = [obj]
    if isinstance(obj, type):
        targets = []
        for value in vars(obj).values():
            value = getattr(value, "__func__", value)  # staticmethod / classmethod
            if isinstance(value, property):
                targets.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
            else:
                targets.append(value)
    for fn in targets:
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType) and code.co_filename == "<dynamic-code>":
            try:
                fn.__code__ = _with_filename(code, filename)
            except (AttributeError, TypeError, ValueError):
                pass


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def function_id(data: bytes) -> int:
    """A 63-bit content hash of a pickled function."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def encode_call(
    name: str,
    args: tuple,
    kwargs: dict,
    put: Callable[[Any], ObjectRef],
) -> tuple[bytes, list[int], tuple[int, ...], list[ObjectRef]]:
    """Pack ``args``/``kwargs`` for a worker.

    Returns ``(blob, dependency ids, contained ids, refs to keep alive)``:
    top-level ObjectRefs are replaced by slots the worker fills with their
    values; arguments whose pickle exceeds ``INLINE_MAX`` are stored with
    ``put`` first and passed the same way (as Ray does), so big arrays are
    written to shared memory once and mapped by the worker.
    """
    if not kwargs and all(type(a) in _PLAIN for a in args):
        # The common small call: one plain pickle, no ref scan, no out-of-band buffers.
        blob = pickle.dumps((args, None, ()), protocol=5)
        if len(blob) <= INLINE_MAX:
            return blob, [], (), []
    slots: list[int | str] = []
    deps: list[int] = []
    keep: list[ObjectRef] = []
    plain_args = list(args)
    plain_kwargs = dict(kwargs) if kwargs else kwargs
    for i, a in enumerate(plain_args):
        if type(a) is ObjectRef:
            slots.append(i)
            deps.append(a.id)
            plain_args[i] = None
    if plain_kwargs:
        for k, v in plain_kwargs.items():
            if type(v) is ObjectRef:
                slots.append(k)
                deps.append(v.id)
                plain_kwargs[k] = None
    payload = (plain_args, plain_kwargs, slots)
    try:
        sobj = serialize(payload)
    except SerializationError:
        _raise_for_unpicklable(name, plain_args, plain_kwargs or {})
        raise
    if sobj.nbytes > INLINE_MAX:
        moved = _move_large_arguments(plain_args, plain_kwargs or {}, slots, deps, keep, put)
        if moved:
            sobj = serialize((plain_args, plain_kwargs, slots))
    return to_bytes(sobj), deps, sobj.contained_ids, keep


def _move_large_arguments(args, kwargs, slots, deps, keep, put) -> bool:
    moved = False
    for key, value in [*enumerate(args), *kwargs.items()]:
        if key in slots or value is None:
            continue
        if serialize(value).nbytes > INLINE_MAX // 2:
            ref = put(value)
            keep.append(ref)
            slots.append(key)
            deps.append(ref.id)
            if isinstance(key, int):
                args[key] = None
            else:
                kwargs[key] = None
            moved = True
    return moved


def _raise_for_unpicklable(name: str, args: list, kwargs: dict) -> None:
    for key, value in [*enumerate(args), *kwargs.items()]:
        try:
            serialize(value)
        except SerializationError as err:
            where = f"argument {key}" if isinstance(key, int) else f"keyword argument {key!r}"
            raise SerializationError(
                f"{where} of {name} (type {type(value).__module__}.{type(value).__qualname__}) "
                f"cannot be pickled to send to a worker: {err}. Pass something picklable, "
                "or create the object inside the task"
            ) from err


def split_returns(name: str, value: Any, num_returns: int) -> list:
    """A call's result as its ``num_returns`` values (every backend checks it here).

    >>> split_returns("f", (1, 2), 2)
    [1, 2]
    >>> split_returns("f", [1, 2], 1)
    [[1, 2]]
    """
    if num_returns == 1:
        return [value]
    try:
        values = list(value)
    except TypeError:
        values = None
    if values is None or len(values) != num_returns:
        raise ValueError(f"{name} declared num_returns={num_returns} but returned "
                         f"{type(value).__name__} {value!r:.80}; return a tuple of that length")
    return values


def decode_call(blob: bytes, dep_values: list) -> tuple[list, dict]:
    """Unpack a call on the worker, filling dependency slots with their values."""
    if blob[:4] == LAYOUT_MAGIC:
        args, kwargs, slots = loads(blob)
    else:
        args, kwargs, slots = pickle.loads(blob)
    if not slots:
        return args, kwargs or {}
    args = list(args)
    for slot, value in zip(slots, dep_values):
        if isinstance(slot, int):
            args[slot] = value
        else:
            kwargs[slot] = value
    return args, kwargs or {}
