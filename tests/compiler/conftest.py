"""Fixtures of the compiler tests (the DAGs they share are in dag_example.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sluice


@pytest.fixture
def no_runtime_started() -> Iterator[None]:
    """Fail a test that starts a runtime: the compiler is tested with no worker running.

    A module that holds to it says ``pytestmark = pytest.mark.usefixtures("no_runtime_started")``.
    """
    yield
    assert not sluice.is_initialized(), "a compiler test must not start a runtime"
