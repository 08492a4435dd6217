"""Arguments, results and errors of handle calls as bytes (pickle protocol 5).

Plain values (numbers, strings, bytes, None, and lists/tuples/dicts of them at the top)
take the fast C pickler; anything else (classes defined in ``__main__`` or a test module,
lambdas) goes through cloudpickle, which the other side reads with plain ``pickle.loads``.

>>> loads(dumps(((1, "a"), {"k": b"v"})))
((1, 'a'), {'k': b'v'})
>>> err = error_from(error_body(ValueError("bad 7")))
>>> type(err).__name__, str(err)
('ValueError', 'bad 7')
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

_PLAIN = frozenset((int, float, str, bytes, bool, type(None)))


def _plain(value: Any) -> bool:
    t = type(value)
    if t in _PLAIN:
        return True
    if t is tuple or t is list:
        return all(type(v) in _PLAIN for v in value)
    if t is dict:
        return all(type(v) in _PLAIN for v in value.values())
    return False


def dumps(value: Any) -> bytes:
    """``value`` as bytes; :func:`loads` reads them."""
    if type(value) is tuple and len(value) == 2 and type(value[1]) is dict:
        plain = all(_plain(v) for v in value[0]) and all(_plain(v) for v in value[1].values())
    else:
        plain = _plain(value)
    if plain:
        return pickle.dumps(value, protocol=5)
    return cloudpickle.dumps(value, protocol=5)


loads = pickle.loads


class RemoteError(Exception):
    """A replica's exception that could not travel as itself: its type name and message."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


def error_body(exc: BaseException) -> bytes:
    """An ERROR frame's body for ``exc``: the exception pickled, else a :class:`RemoteError`."""
    try:
        data = cloudpickle.dumps(exc, protocol=5)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - an exception that does not pickle: keep type and text
        return pickle.dumps(RemoteError(type(exc).__name__, str(exc)), protocol=5)


def error_from(body: bytes) -> BaseException:
    """The exception an ERROR frame's body carries."""
    try:
        exc = pickle.loads(body)
    except Exception as err:  # noqa: BLE001 - e.g. its class does not import here
        return RemoteError(type(err).__name__, f"an error that cannot be read here: {err}")
    if not isinstance(exc, BaseException):
        return RemoteError(type(exc).__name__, repr(exc))
    return exc
