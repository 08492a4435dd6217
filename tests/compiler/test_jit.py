"""numba compilation of jit functions and chains: same results as Python, clear errors."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from sluice.compiler import jit
from sluice.compiler.ir import OpKind, Slot, make_op, pack_template
from sluice.exceptions import InternalError


def scale(x, factor):
    return x * factor


def shift(x, offset):
    return x + offset


def total(x):
    return x.sum()


def uses_python_objects(x):
    return {x: object()}


def first_of(x, items):
    return x + items[0]


def test_chain_matches_python_and_is_compiled() -> None:
    x = np.arange(10.0)
    chain = jit.compile_chain([(scale, ()), (shift, (3.0,)), (total, ())])
    assert chain(x, 2.0) == pytest.approx(total(shift(scale(x, 2.0), 3.0)))
    assert isinstance(chain.dispatcher, numba.core.registry.CPUDispatcher)
    assert len(chain.dispatcher.signatures) == 1  # compiled machine code for this call
    assert chain.functions == (scale, shift, total)


def test_array_constants_are_baked_in() -> None:
    x = np.ones(3)
    offsets = np.array([1.0, 2.0, 3.0])
    chain = jit.compile_chain([(scale, (2.0,)), (shift, (offsets,))])
    np.testing.assert_array_equal(chain(x), shift(scale(x, 2.0), offsets))


def test_chains_and_functions_are_cached() -> None:
    steps = [(scale, ()), (shift, (1,))]
    assert jit.compile_chain(steps) is jit.compile_chain(list(steps))
    assert jit.compile_chain(steps) is not jit.compile_chain([(scale, ()), (shift, (1.0,))])
    assert jit.jit_function(scale) is jit.jit_function(scale)
    assert isinstance(jit.jit_function(scale), numba.core.registry.CPUDispatcher)


def test_single_function_chain_accepts_a_bare_callable() -> None:
    assert jit.compile_chain([total])(np.arange(5)) == 10


def test_uncompilable_function_is_named_with_the_remedy() -> None:
    chain = jit.compile_chain([(scale, ()), (uses_python_objects, ())])
    with pytest.raises(jit.JitCompileError,
                       match=r"^uses_python_objects cannot be compiled by numba in nopython "
                             r"mode: .*; drop jit=True from its options"):
        chain(3, 2)


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPendingDeprecationWarning")
def test_constants_numba_cannot_bake_are_blamed_on_the_chain() -> None:
    chain = jit.compile_chain([(scale, ()), (first_of, ([1, 2],))])
    with pytest.raises(jit.JitCompileError,
                       match=r"^the jit chain scale -> first_of compiles function by function "
                             r"but not as one: .*numba cannot bake lists"):
        chain(3, 2)


def test_errors_raised_by_the_code_pass_through() -> None:
    def divide(x, d):
        return x // d

    with pytest.raises(ZeroDivisionError):
        jit.compile_chain([divide])(7, 0)


def test_non_function_is_rejected_by_name() -> None:
    with pytest.raises(jit.JitCompileError, match=r"^len cannot be compiled by numba: .*drop jit"):
        jit.jit_function(len)


def test_bad_step_shape_is_named() -> None:
    with pytest.raises(TypeError, match=r"step 3 must be a function or a \(function, tuple"):
        jit.compile_chain([3])


def chained_op(name: str, src: str, args: tuple, kwargs: dict | None = None):
    return make_op(OpKind.CALL, name, inputs=(src,), fn_id=hash(name) & 0xFFFF, jit=True,
                   template=pack_template(args, kwargs or {}))


def test_chained_constants_reads_the_template() -> None:
    assert jit.chained_constants(chained_op("a", "x", (Slot(0), 2.0, "k"))) == (2.0, "k")
    assert jit.chained_constants(make_op(OpKind.CALL, "b", inputs=("x",), jit=True)) == ()
    assert jit.chained_constants(chained_op("c", "x", (2.0, Slot(0)))) is None
    assert jit.chained_constants(chained_op("d", "x", (Slot(0),), {"k": 1})) is None
    assert jit.chained_constants(chained_op("e", "x", (Slot(0), [Slot(0)]))) is None


def test_chain_steps_wire_a_stage_to_compile_chain() -> None:
    first = make_op(OpKind.CALL, "scale", inputs=("x",), fn_id=1, jit=True,
                    template=pack_template((Slot(0), 3.0), {}))
    second = chained_op("shift", first.id, (Slot(0), 1.0))
    steps = jit.chain_steps([first, second], {1: scale, second.fn_id: shift})
    assert steps == [(scale, ()), (shift, (1.0,))]
    assert jit.compile_chain(steps)(2.0, 3.0) == 7.0
    broken = chained_op("shift", first.id, (1.0, Slot(0)))
    with pytest.raises(InternalError, match=r"cannot follow .* in a jit chain"):
        jit.chain_steps([first, broken], {1: scale, broken.fn_id: shift})
