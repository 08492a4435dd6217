"""``sluice.util.inspect_serializability``: what keeps a value or function from pickling."""

from __future__ import annotations

import io
import threading

import pytest

from sluice.util import inspect_serializability
from sluice.util.check_serialize import FailureTuple

LOCK = threading.Lock()


def made_in_a_function():
    """A function cloudpickle pickles by value, with the globals it uses (one importable by
    name pickles by reference: its globals never travel)."""
    def uses_the_global_lock() -> bool:
        return LOCK.locked()

    return uses_the_global_lock


def test_a_function_capturing_a_lock_names_the_lock() -> None:
    uses_the_global_lock = made_in_a_function()
    out = io.StringIO()
    ok, failures = inspect_serializability(uses_the_global_lock, name="uses_the_global_lock",
                                           print_file=out)
    assert not ok
    assert [(f.name, f.obj, f.parent) for f in failures] == [("LOCK", LOCK, uses_the_global_lock)]
    trace = out.getvalue()
    assert "Checking Serializability of <function made_in_a_function.<locals>.uses_the_global_lock" in trace
    assert "Detected 1 global variables" in trace and "!!! FAIL serialization" in trace
    assert "Serializing 'LOCK'" in trace


def test_a_closure_variable_is_found_too() -> None:
    local_lock = threading.Lock()

    def uses_local_lock() -> bool:
        return local_lock.locked()

    ok, failures = inspect_serializability(uses_local_lock, print_file=io.StringIO())
    assert not ok and {f.name for f in failures} == {"local_lock"}


class Holder:
    def __init__(self):
        self.size = 3
        self.lock = threading.Lock()


def test_an_objects_attribute_that_fails_is_named() -> None:
    holder = Holder()
    ok, failures = inspect_serializability(holder, name="holder", print_file=io.StringIO())
    assert not ok and [(f.name, f.parent) for f in failures] == [("lock", holder)]


def test_depth_zero_reports_the_object_itself() -> None:
    uses_the_global_lock = made_in_a_function()
    ok, failures = inspect_serializability(uses_the_global_lock, name="fn", depth=0,
                                           print_file=io.StringIO())
    assert not ok and [(f.name, f.obj, f.parent) for f in failures] == [("fn", uses_the_global_lock, None)]


def test_a_value_that_pickles_reports_nothing() -> None:
    out = io.StringIO()
    assert inspect_serializability({"a": [1, 2]}, print_file=out) == (True, set())
    assert "It pickles" in out.getvalue()
    assert repr(FailureTuple(1, "x", None)) == "FailTuple(x [obj=1, parent=None])"


def test_a_bad_depth_is_refused() -> None:
    with pytest.raises(ValueError, match=r"depth=-1\): give an int >= 0"):
        inspect_serializability(1, depth=-1)
