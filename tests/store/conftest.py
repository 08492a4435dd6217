"""Fixtures of the store tests: a fresh session whose segments are removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sluice.store.shm import cleanup_session, new_session_id


@pytest.fixture
def session() -> Iterator[str]:
    """A new session id; any segment of it left behind is removed after the test."""
    session_id = new_session_id()
    yield session_id
    cleanup_session(session_id)
