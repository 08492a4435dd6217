"""What arguments a function takes, checked where a call is made.

As in Ray (which binds a call's arguments to the function's signature at
``.remote()``), a call whose arguments cannot fit is a TypeError in the caller,
at ``.remote()`` or ``.bind()``, naming the function and what is wrong; not an
error from a worker at ``get``. An :class:`Arity` is plain, picklable data (each
parameter's name, kind and whether it has a default), so an actor handle carries
its methods' arities to every process that calls through it.

>>> def add(a, b=1): return a + b
>>> Arity.of(add, "add").check("add.remote()", (1, 2, 3), {})
Traceback (most recent call last):
...
TypeError: add.remote(): the arguments do not fit add(a, b=1): too many positional arguments (the call passed 3 positional arguments and no keyword arguments); fix the call
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

_P = inspect.Parameter
_KINDS = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.VAR_POSITIONAL, _P.KEYWORD_ONLY,
          _P.VAR_KEYWORD)  # indexed by the kind's int value
_POSITIONAL = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)


class _Default:
    """Stands in for a default value in a rebuilt signature: only its presence matters."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "..."


_DEFAULT = _Default()


class Arity:
    """The parameters of a callable as plain data: ``(name, kind, has_default)`` each.

    ``label`` names the callable in errors (``add``, ``Counter``, ``Counter.add``) and
    ``text`` is its signature as the user wrote it, annotations left out. The
    common call, positional arguments only and as many as it takes, is checked with
    two comparisons; any other call binds to the signature (built once).
    """

    __slots__ = ("label", "params", "text", "_low", "_high", "_signature")

    def __init__(self, label: str, params: tuple[tuple[str, int, bool], ...], text: str):
        self.label = label
        self.params = params
        self.text = text
        kinds = [_KINDS[kind] for _, kind, _ in params]
        positional = [p for p, kind in zip(params, kinds) if kind in _POSITIONAL]
        self._low: float = sum(1 for _, _, has_default in positional if not has_default)
        self._high: float = math.inf if _P.VAR_POSITIONAL in kinds else len(positional)
        if any(kind is _P.KEYWORD_ONLY and not has_default
               for (_, _, has_default), kind in zip(params, kinds)):
            self._low, self._high = 1, 0  # a required keyword: no call passes the quick test
        self._signature: inspect.Signature | None = None

    @classmethod
    def of(cls, fn: Callable, label: str, drop_first: bool = False) -> Arity | None:
        """The arity of ``fn``; None when it has no signature Python can read (builtins, C
        functions: their calls are not checked). ``drop_first``: a method read off its
        class, called on an instance (``self`` is not the caller's to pass)."""
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        params = list(signature.parameters.values())
        if drop_first and params and params[0].kind in _POSITIONAL:
            params = params[1:]
        shown = signature.replace(
            parameters=[p.replace(annotation=_P.empty) for p in params],
            return_annotation=inspect.Signature.empty)
        return cls(label, tuple((p.name, int(p.kind), p.default is not _P.empty) for p in params),
                   str(shown))

    def check(self, call: str, args: tuple, kwargs: dict) -> None:
        """Raise TypeError, naming ``call`` and what is wrong, when ``args``/``kwargs`` cannot
        be passed to the callable."""
        if not kwargs and self._low <= len(args) <= self._high:
            return
        why = self.problem(args, kwargs)
        if why is not None:
            raise TypeError(f"{call}: the arguments do not fit {self.label}{self.text}: {why} "
                            f"(the call passed {_given(args, kwargs)}); fix the call")

    def problem(self, args: tuple, kwargs: dict) -> str | None:
        """Why ``args``/``kwargs`` cannot be passed to the callable (Python's words), or None."""
        signature = self._signature
        if signature is None:
            signature = self._signature = inspect.Signature([
                _P(name, _KINDS[kind], default=_DEFAULT if has_default else _P.empty)
                for name, kind, has_default in self.params])
        try:
            signature.bind(*args, **kwargs)
        except TypeError as err:
            return str(err)
        return None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Arity, (self.label, self.params, self.text))

    def __repr__(self) -> str:
        return f"Arity({self.label}{self.text})"


def _given(args: tuple, kwargs: dict) -> str:
    """What the call passed, in words: ``3 positional arguments and no keyword arguments``."""
    n = len(args)
    positional = f"{n or 'no'} positional argument{'' if n == 1 else 's'}"
    if not kwargs:
        return f"{positional} and no keyword arguments"
    plural = "" if len(kwargs) == 1 else "s"
    return f"{positional} and the keyword argument{plural} {', '.join(kwargs)}"
