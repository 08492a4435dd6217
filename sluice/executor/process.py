"""Starting worker processes.

Workers are fresh interpreters (``python -m sluice.executor.worker``), never
forks of the driver: the driver has threads, and a fresh process imports only
what it runs. The driver's ``sys.path`` travels in ``SLUICE_SYS_PATH`` so a
worker can import every module the driver can.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection


def spawn_worker(session: str, index: int, env_overrides: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen, Connection]:
    """Start worker ``index``; returns the process and the driver's end of its pipe."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["SLUICE_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if env_overrides:
        env.update(env_overrides)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.executor.worker", str(child.fileno()), session, str(index)],
        pass_fds=(child.fileno(),),
        env=env,
        stdin=subprocess.DEVNULL,
    )
    child.close()
    conn = Connection(os.dup(parent.fileno()))
    parent.close()
    return proc, conn


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


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` on this machine is alive and is the process that started at ``start``."""
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

