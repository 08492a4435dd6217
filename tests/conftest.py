"""Fixtures shared by every test package.

The eager runtime is a process-wide handle (``sluice.init``). Each test module
that starts one must stop it when the module ends; the autouse fixture below
checks that no runtime leaks from one module into the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sluice


@pytest.fixture(autouse=True, scope="module")
def no_runtime_leaks_between_modules() -> Iterator[None]:
    """Fail the module that leaves a runtime running, and stop it so the next starts clean."""
    leaked_before = sluice.is_initialized()
    if leaked_before:
        sluice.shutdown()
    assert not leaked_before, "an earlier test module left a sluice runtime running"
    yield
    leaked = sluice.is_initialized()
    sluice.shutdown()
    assert not leaked, "this test module left a sluice runtime running; shut it down in its fixture"
