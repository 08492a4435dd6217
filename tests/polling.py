"""Waiting for a condition in tests: poll it with a generous deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(what: Callable[[], object], deadline_s: float = 60.0, interval_s: float = 0.02,
          waited_for: str = "the condition") -> object:
    """Poll ``what`` until it returns something true and return that value; fail the test,
    naming ``waited_for``, if ``deadline_s`` passes first."""
    end = time.monotonic() + deadline_s
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < end, f"{waited_for} did not happen within {deadline_s} s"
        time.sleep(interval_s)
