"""Arity (``sluice/executor/arity.py``): which calls a signature takes, as plain data.

No runtime: the checks at ``.remote()`` run before anything is submitted
(tests/executor/test_api.py shows that with one running).
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.executor.arity import Arity


def plain(a, b=2):
    return a, b


def rest(a, *args, k, **kwargs):
    return a, args, k, kwargs


def only(a, /, b):
    return a, b


def annotated(x: int, y: "list[int]" = None) -> int:  # noqa: RUF013 (shown without annotations)
    return x


@pytest.mark.parametrize(("fn", "args", "kwargs", "why"), [
    (plain, (1, 2, 3), {}, "too many positional arguments"),
    (plain, (), {}, "missing a required argument: 'a'"),
    (plain, (1,), {"c": 3}, "got an unexpected keyword argument 'c'"),
    (plain, (1,), {"a": 1}, "multiple values for argument 'a'"),
    (rest, (1, 2), {}, "missing a required argument: 'k'"),
    (only, (), {"a": 1, "b": 2}, "'a' parameter is positional only, but was passed as a keyword"),
])
def test_a_call_that_does_not_fit_names_the_call_the_signature_and_why(fn, args, kwargs,
                                                                       why: str) -> None:
    arity = Arity.of(fn, fn.__name__)
    assert arity is not None
    with pytest.raises(TypeError, match=rf"^{fn.__name__}\.remote\(\): the arguments do not fit "
                                        rf"{fn.__name__}\(.*\): {why} \(the call passed "):
        arity.check(f"{fn.__name__}.remote()", args, kwargs)


def test_the_message_counts_what_the_call_passed() -> None:
    arity = Arity.of(plain, "plain")
    with pytest.raises(TypeError, match=r"^plain\.remote\(\): the arguments do not fit plain\(a, b=2\): "
                                        r"too many positional arguments \(the call passed 3 positional "
                                        r"arguments and no keyword arguments\); fix the call$"):
        arity.check("plain.remote()", (1, 2, 3), {})
    with pytest.raises(TypeError, match=r"\(the call passed 1 positional argument and the keyword "
                                        r"arguments c, d\)"):
        arity.check("plain.remote()", (1,), {"c": 1, "d": 2})


def test_the_signature_is_shown_without_annotations() -> None:
    arity = Arity.of(annotated, "annotated")
    assert arity.text == "(x, y=None)"


@pytest.mark.parametrize("fn", [max, getattr, range])
def test_a_function_without_a_readable_signature_is_not_checked(fn) -> None:
    assert Arity.of(fn, "builtin") is None


def test_a_builtin_with_a_signature_is_checked_like_any_function() -> None:
    arity = Arity.of(len, "len")
    assert arity is not None and arity.text == "(obj, /)"
    with pytest.raises(TypeError, match="too many positional arguments"):
        arity.check("len.remote()", (1, 2), {})


def test_a_method_read_off_its_class_drops_self() -> None:
    class Model:
        def predict(self, x, *, scale=1):
            return x * scale

    arity = Arity.of(Model.predict, "Model.predict", drop_first=True)
    assert arity.text == "(x, *, scale=1)"
    arity.check("Model.predict.remote()", (1,), {"scale": 2})
    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        arity.check("Model.predict.remote()", (), {})


def test_an_arity_pickles_as_plain_data_and_checks_the_same() -> None:
    arity = Arity.of(rest, "rest")
    copy = pickle.loads(pickle.dumps(arity))
    assert (copy.label, copy.params, copy.text) == (arity.label, arity.params, arity.text)
    assert copy.problem((1,), {}) == arity.problem((1,), {}) == "missing a required argument: 'k'"


def _python_accepts(fn, args: tuple, kwargs: dict) -> bool:
    try:
        fn(*args, **kwargs)
    except TypeError:
        return False
    return True


@given(st.sampled_from([plain, rest, only, annotated]),
       st.lists(st.integers(), max_size=4),
       st.dictionaries(st.sampled_from(["a", "b", "k", "x", "y", "z"]), st.integers(), max_size=3))
def test_arity_accepts_exactly_the_calls_python_accepts(fn, args: list, kwargs: dict) -> None:
    arity = Arity.of(fn, fn.__name__)
    accepted = arity.problem(tuple(args), kwargs) is None
    assert accepted == _python_accepts(fn, tuple(args), kwargs)
    try:
        arity.check("call", tuple(args), kwargs)  # the quick path agrees
        checked = True
    except TypeError:
        checked = False
    assert checked == accepted
