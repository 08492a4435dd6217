"""Fixtures shared by every test package.

The eager runtime is a process-wide handle (``sluice.init``). Each test module
that starts one must stop it when the module ends; the autouse fixture below
checks that no runtime leaks from one module into the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

import sluice

# Hypothesis times each example (a 200 ms deadline) and data generation (the too_slow health
# check): wall-clock bounds that fail on a busy machine. Off for every property test; a test
# that lists its own suppressed health checks names too_slow there too.
settings.register_profile("sluice", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sluice")


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
