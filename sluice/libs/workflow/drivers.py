"""Which process drives a run, and whether it is still alive (a dead driver: RESUMABLE)."""

from __future__ import annotations

import os
import socket

from sluice.executor.process import process_alive, process_start


def this_driver() -> tuple[str, int, str | None]:
    pid = os.getpid()
    return socket.gethostname(), pid, process_start(pid)


def driver_alive(host: str | None, pid: int | None, start: str | None) -> bool:
    if pid is None:
        return False
    if host != socket.gethostname() or os.name == "nt":
        return True  # cannot look at another host's processes (nor safely probe on Windows)
    return process_alive(pid, start)
