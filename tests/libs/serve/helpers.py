"""What the serve tests share: polling for a condition with a generous deadline, and a free
port (serve never takes 8000 in tests: the machine is shared)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

DEADLINE_S = 120


def eventually(check: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns a true value (errors count as not yet); its value."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - not yet
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {deadline_s} s (last error: {last!r})")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
