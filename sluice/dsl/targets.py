"""Targets: ``"MODULE:ATTR"`` strings that name a DAG (or what builds one) in user code.

``sluice plan`` and ``sluice.workflow`` schedules both name their DAG this way;
:func:`import_target` is the one loader. What the named object must be (a DAG, a
Plan, a function of some params) is the caller's rule.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TargetError", "import_target"]


class TargetError(ValueError):
    """A target does not import, or does not give what its caller needs; the message names it."""


def import_target(target: str, what: str = "target", example: str = "mypipelines:dag") -> Any:
    """The object ``"MODULE:ATTR"`` names; ATTR may be dotted (``"jobs:Nightly.build"``).

    The module is imported from ``sys.path`` as it is (a command that wants the current
    directory searched puts it there first). Raises :class:`TargetError` starting with
    ``what`` and the target if it is not MODULE:ATTR, the module does not import, or an
    attribute is missing; ``example`` is the well-formed target the first error suggests.

    >>> import_target("os.path:join") is __import__("os").path.join
    True
    >>> import_target("os:no_such_name")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sluice.dsl.targets.TargetError: target 'os:no_such_name': module 'os' has no attribute 'no_such_name'; ...
    """
    module_name, sep, attr_path = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not sep or not module_name or not attr_path:
        raise TargetError(f"{what} {target!r} is not MODULE:ATTR; name a module and an attribute "
                          f"in it, e.g. {example}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name
                                     or module_name.startswith(exc.name + ".")):
            raise TargetError(f"{what} {target!r}: no module named {module_name!r}; run from the "
                              "directory that holds it or add that directory to PYTHONPATH"
                              ) from None
        raise _does_not_import(what, target, module_name, exc) from exc
    except Exception as exc:
        raise _does_not_import(what, target, module_name, exc) from exc
    module = obj
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise TargetError(f"{what} {target!r}: module {module_name!r} has no attribute "
                              f"{attr_path!r}; its public names are {_public_names(module)}")
        obj = getattr(obj, attr)
    return obj


def _does_not_import(what: str, target: str, module_name: str, exc: Exception) -> TargetError:
    return TargetError(f"{what} {target!r}: module {module_name!r} does not import "
                       f"({type(exc).__name__}: {exc}); fix it, or install what it needs where "
                       "this runs")


def _public_names(module: Any) -> str:
    names = sorted(n for n in vars(module) if not n.startswith("_"))
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "(none)"
