"""Fixtures of the sluice.data tests.

``runtime`` starts one sluice runtime with two CPUs for a whole test module and
stops it when the module ends (tests/conftest.py fails any module that leaves
one running). Modules that run Datasets ask for it with
``pytestmark = pytest.mark.usefixtures("runtime")``; the modules that test leaf
functions over pyarrow need no runtime and do not start one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sluice


@pytest.fixture(scope="module")
def runtime() -> Iterator[None]:
    """A two-CPU runtime for the module, shut down at its end."""
    sluice.init(num_cpus=2)
    try:
        yield
    finally:
        sluice.shutdown()
