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
