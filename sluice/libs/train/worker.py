"""A rank of the gang: the actor that runs the training loop on one worker process.

:class:`TrainWorker` is the actor class of the run's template (an async actor: its event
loop serves the driver while the loop runs on a thread of its own, so the loop may call
the runtime, read dataset shards, or block in a collective). ``address()`` gives the
rendezvous address (rank 0's), ``start(spec)`` sets the rank's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), joins the process group (the backend's ``on_start``) and starts the
loop; ``next()`` returns the rank's next event: ``{"kind": "report", "metrics",
"checkpoint", "checkpoint_data"}``, ``{"kind": "done"}`` or ``{"kind": "error", "error",
"exception"}``. The driver stops a gang by killing its actors.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from typing import Any, Callable

from sluice.libs.train.session import StopTraining, TrainContext, TrainSession, set_session
from sluice.libs.tune.checkpoint import Checkpoint, unpack
from sluice.libs.tune.runner import error_event


def takes_config(loop: Callable) -> bool:
    """Whether ``loop`` takes the ``train_loop_config`` argument (Ray's rule: one
    parameter or none)."""
    import inspect

    try:
        params = [p for p in inspect.signature(loop).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) >= 1


class TrainWorker:
    """One rank: runs ``loop`` with ``backend`` (its ``on_start``/``on_shutdown`` join and
    leave the process group)."""

    def __init__(self, loop: Callable, backend: Any = None, rank: int = 0):
        self.rank = rank  # (the template's rank: how the run tells its actors apart)
        self.loop = loop
        self.backend = backend
        self.session: TrainSession | None = None
        self.thread: threading.Thread | None = None

    async def address(self) -> tuple[str, int, str]:
        """(this node's IP address, a free port on it, the node's id): rank 0's answer is
        the gang's rendezvous address."""
        import sluice
        from sluice.util.node import get_node_ip_address

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return get_node_ip_address(), port, sluice.get_runtime_context().get_node_id()

    async def start(self, spec: dict[str, Any], shards: dict[str, Any] | None = None) -> None:
        """Set the rank's environment, join the process group and run the loop (on a
        thread) with this rank's datasets, ``shards`` (name -> its shard iterator, or the
        whole dataset); its events come from :meth:`next`."""
        os.environ.update({"RANK": str(spec["world_rank"]),
                           "WORLD_SIZE": str(spec["world_size"]),
                           "LOCAL_RANK": str(spec["local_rank"]),
                           "LOCAL_WORLD_SIZE": str(spec["local_world_size"]),
                           "NODE_RANK": str(spec["node_rank"]),
                           "MASTER_ADDR": spec["master_addr"],
                           "MASTER_PORT": str(spec["master_port"])})
        context = TrainContext(spec["world_rank"], spec["world_size"], spec["local_rank"],
                               spec["local_world_size"], spec["node_rank"],
                               spec["experiment_name"], spec.get("trial_name"),
                               spec.get("trial_id"))
        remote = bool(spec.get("remote"))
        path = spec.get("checkpoint")
        landed = None
        if path and spec.get("checkpoint_data") is not None:  # no shared file system
            path = landed = unpack(spec["checkpoint_data"],
                                   tempfile.mkdtemp(prefix="sluice-train-"))
        checkpoint = Checkpoint(path) if path else None
        use_gpu = bool(spec.get("use_gpu"))
        session = TrainSession(context, checkpoint, shards or {}, remote,
                               asyncio.get_running_loop(), use_gpu)
        self.session = session
        config = spec.get("config")
        loop, backend = self.loop, self.backend

        def run() -> None:
            set_session(session)
            joined = False
            try:
                if backend is not None:
                    backend.on_start(context, use_gpu)
                    joined = True
                if takes_config(loop):
                    loop(config if config is not None else {})
                else:
                    loop()
            except StopTraining:
                return
            except BaseException as exc:  # noqa: BLE001 - the rank's error, reported
                session.put(error_event(exc))
                return
            finally:
                if joined:
                    backend.on_shutdown(context)
                if landed is not None:  # the copy of the checkpoint this rank started from
                    shutil.rmtree(landed, ignore_errors=True)
            session.put({"kind": "done", "reports": session.reports})

        self.thread = threading.Thread(target=run, daemon=True,
                                       name=f"sluice-train-rank-{spec['world_rank']}")
        self.thread.start()

    async def next(self) -> dict[str, Any]:
        """Let the rank run to its next event."""
        if self.session is None:
            return {"kind": "error", "error": "no training loop runs on this rank",
                    "exception": None}
        return await self.session.next()
