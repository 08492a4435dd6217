"""``inspect_serializability``: find what keeps a value or function from pickling (Ray's
``ray.util.inspect_serializability``, also at ``ray.util.check_serialize``).

sluice ships functions, classes and values other than arrays and tables with cloudpickle;
this tries cloudpickle on the object and, when that fails, walks into what it holds (a
function's globals and closure variables, an object's attributes and methods) up to
``depth`` levels, printing each step, to name the innermost parts that fail.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["FailureTuple", "inspect_serializability"]


class FailureTuple:
    """One part that does not pickle: the object, the name it was reached by, and the
    object that holds it (None at the top)."""

    def __init__(self, obj: Any, name: str, parent: Any):
        self.obj = obj
        self.name = name
        self.parent = parent

    def __repr__(self) -> str:
        return f"FailTuple({self.name} [obj={self.obj}, parent={self.parent}])"


class _Trace:
    """Prints the walk, indented by depth, to ``file`` (None: stdout)."""

    def __init__(self, file: Any):
        self.file = file
        self.level = 0

    def say(self, text: str) -> None:
        print("    " * self.level + text, file=self.file)


def inspect_serializability(base_obj: Any, name: str | None = None, depth: int = 3,
                            print_file: Any = None) -> tuple[bool, set[FailureTuple]]:
    """Whether ``base_obj`` pickles, and the set of :class:`FailureTuple` s naming the parts
    that do not (empty when it pickles); prints the search to ``print_file`` (stdout).

    >>> import io, threading
    >>> from sluice.util import inspect_serializability
    >>> lock = threading.Lock()
    >>> def uses_lock():
    ...     return lock.locked()
    >>> ok, failures = inspect_serializability(uses_lock, name="uses_lock", print_file=io.StringIO())
    >>> ok, [f.name for f in failures]
    (False, ['lock'])
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"inspect_serializability(depth={depth!r}): give an int >= 0, how many "
                         "levels of what the object holds to search")
    trace = _Trace(print_file)
    title = f"Checking Serializability of {base_obj}"
    rule = "=" * min(len(title), 80)
    for line in (rule, title, rule):
        trace.say(line)
    failures: set[FailureTuple] = set()
    ok = _check(base_obj, str(base_obj) if name is None else name, depth, None, failures, trace)
    trace.say(rule)
    if ok:
        trace.say("It pickles: nothing to report.")
    else:
        trace.say("Not serializable: " + ", ".join(sorted(repr(f) for f in failures)))
        trace.say("Create these inside the function or class that uses them (or pass them as "
                  "arguments) instead of capturing them; there may be more behind them.")
    trace.say(rule)
    return ok, failures


def _check(obj: Any, name: str, depth: int, parent: Any, failures: set[FailureTuple],
           trace: _Trace) -> bool:
    """Whether ``obj`` pickles; if not, add the innermost failing parts found to ``failures``
    (``obj`` itself when none of its parts fails alone, or at depth 0)."""
    import cloudpickle

    if parent is not None:
        trace.say(f"Serializing '{name}' {obj}...")
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception as err:  # what fails is the object's business: any error counts
        trace.say(f"!!! FAIL serialization: {err}")
    found = False
    if depth > 0:
        trace.level += 1
        try:
            for part_name, part in _parts(obj, trace):
                if not _check(part, part_name, depth - 1, obj, failures, trace):
                    found = True
                    break  # the first culprit, as Ray reports it
        finally:
            trace.level -= 1
        if not found:
            trace.say(f"WARNING: no part of {obj} fails alone; it is reported itself")
    if not found:
        try:
            failures.add(FailureTuple(obj, name, parent))
        except TypeError:  # (FailureTuple hashes by identity; kept for unhashable subclasses)
            pass
    return False


def _parts(obj: Any, trace: _Trace) -> list[tuple[str, Any]]:
    """What ``obj`` holds that pickling it pickles too: a function's globals and closure
    variables; else its methods, then its other attributes (dunders and builtins skipped)."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        if closure.globals:
            trace.say(f"Detected {len(closure.globals)} global variables. Checking serializability...")
        if closure.nonlocals:
            trace.say(f"Detected {len(closure.nonlocals)} nonlocal variables. Checking serializability...")
        return [*closure.globals.items(), *closure.nonlocals.items()]
    try:
        members = inspect.getmembers(obj)
    except Exception:  # an object whose attributes raise: nothing to walk into
        return []
    methods = [(n, m) for n, m in members if inspect.isfunction(m)]
    others = [(n, m) for n, m in members if not inspect.isfunction(m)
              and not (n.startswith("__") and n.endswith("__")) and not inspect.isbuiltin(m)]
    return methods + others
