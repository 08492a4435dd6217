"""Collection rules for the whole repository: ``make test`` runs ``tests/`` and the doctests of ``sluice/``.

The generated gRPC modules carry no doctests. A doctest that starts a runtime must stop it:
the fixture below fails the doctest that leaves one running (and stops it, so the next starts
clean), as ``tests/conftest.py`` does for test modules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _pytest.doctest import DoctestItem

import sluice

collect_ignore_glob = ["sluice/executor/cluster/cluster_pb2*.py"]


@pytest.fixture(autouse=True)
def doctests_stop_their_runtime(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a doctest that leaves a sluice runtime running."""
    yield
    if isinstance(request.node, DoctestItem) and sluice.is_initialized():
        sluice.shutdown()
        pytest.fail(f"doctest {request.node.name} left a sluice runtime running; end it with "
                    "sluice.shutdown()")
