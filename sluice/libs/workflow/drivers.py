"""Which process drives a run, and whether it is still alive (a dead driver: RESUMABLE)."""

from __future__ import annotations

import os
import socket


def this_driver() -> tuple[str, int, str | None]:
    pid = os.getpid()
    return socket.gethostname(), pid, process_start(pid)


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid apart."""
    stat = proc_stat(pid)
    return stat[19] if stat is not None and len(stat) > 19 else None


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/{pid}/stat from the state on (index 0 = state), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def driver_alive(host: str | None, pid: int | None, start: str | None) -> bool:
    if pid is None:
        return False
    if host != socket.gethostname() or os.name == "nt":
        return True  # cannot look at another host's processes (nor safely probe on Windows)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    stat = proc_stat(pid)
    if stat is None:
        return True
    if stat[0] in ("Z", "X"):
        return False  # exited, not yet reaped by its parent
    return start is None or len(stat) <= 19 or stat[19] == start
