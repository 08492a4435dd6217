"""A whole cluster on this machine: a head and node daemons as separate processes on loopback.

Like Ray's ``cluster_utils.Cluster``: for tests, benchmarks and trying cluster
mode on a laptop. Every daemon is started through the CLI (``sluice start ...
--block``) with its own port, store session and Flight port, exactly as on
several machines; :meth:`LocalCluster.stop` stops them all.

>>> c = LocalCluster(nodes=2)                       # doctest: +SKIP
>>> sluice.init(address=c.address)                  # doctest: +SKIP
>>> sluice.shutdown(); c.stop()                     # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from sluice.executor.cluster import auth
from sluice.executor.cluster import cluster_pb2 as pb
from sluice.executor.cluster import cluster_pb2_grpc as pb_grpc

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head (with its own node of ``head_cpus``) plus ``nodes`` node daemons of ``cpus`` each.

    ``extra`` flags go to every ``sluice start``, ``node_args[i]`` to node ``i`` only,
    ``head_args`` to the head only; ``env`` is set for every daemon, ``node_env[i]`` for
    node ``i`` only (e.g. its own runtime_env cache, as on its own machine); ``cwd``
    (default: the current directory) is on the daemons' ``PYTHONPATH``, so their workers
    import the driver's modules by name. ``dashboard``: the head serves its dashboard and
    job server at :attr:`dashboard_url`.
    """

    def __init__(self, nodes: int = 2, cpus: float = 1, head_cpus: float = 1, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, node_args: list[list[str]] | None = None,
                 cwd: str | Path | None = None, head_args: list[str] | None = None,
                 node_env: list[dict[str, str]] | None = None, dashboard: bool = False):
        self.cwd = Path(cwd or os.getcwd())
        self.port = free_port()
        self.address = f"sluice://127.0.0.1:{self.port}"
        self.env = {**os.environ,
                    "PYTHONPATH": f"{self.cwd}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    **(env or {})}
        self.env.pop("SLUICE_TOKEN", None)
        self.logs: list[Path] = []
        self.cpus = cpus
        self.extra = extra or []
        # The head's dashboard (and job server) only when asked: it listens on a port of its
        # own, and most tests need none.
        self.dashboard_url = f"http://127.0.0.1:{free_port()}" if dashboard else None
        web = (["--dashboard-port", self.dashboard_url.rsplit(":", 1)[1]] if self.dashboard_url
               else ["--no-dashboard"])
        self.head = self._start(["--head", "--port", str(self.port), "--num-cpus", str(head_cpus),
                                 *web, *self.extra, *(head_args or [])], "head")
        self.wait_for_nodes(1 if head_cpus else 0)
        self.nodes: list[subprocess.Popen] = []
        for i in range(nodes):
            self.nodes.append(self._start_node(node_args[i] if node_args else [], f"node{i}",
                                               node_env[i] if node_env else None))
        self.wait_for_nodes((1 if head_cpus else 0) + nodes)

    def _start_node(self, args: list[str], name: str, env: dict[str, str] | None = None
                    ) -> subprocess.Popen:
        return self._start(["--address", f"127.0.0.1:{self.port}", "--num-cpus", str(self.cpus),
                            *self.extra, *args], name, env)

    def add_node(self, args: list[str] | None = None) -> subprocess.Popen:
        """Start one more node daemon (flags ``args``) and wait until it is alive."""
        alive = len(self.alive_nodes())
        proc = self._start_node(args or [], f"node{len(self.nodes)}")
        self.nodes.append(proc)
        self.wait_for_nodes(alive + 1)
        return proc

    def _start(self, args: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = auth.cluster_dir() / f"local-{self.port}-{name}.log"
        self.logs.append(log)
        out = open(log, "wb")
        return subprocess.Popen([sys.executable, "-m", "sluice.cli", "start", *args, "--block"],
                                cwd=self.cwd, env={**self.env, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def token(self) -> str:
        return (auth.cluster_dir() / f"head-{self.port}" / "token").read_text().strip()

    def channel(self):
        root = self.env.get("SLUICE_TLS_ROOT")
        return auth.open_channel("127.0.0.1", self.port, open(root, "rb").read() if root else None)

    def status(self) -> pb.ClusterStatus:
        channel = self.channel()
        try:
            return pb_grpc.HeadStub(channel).Status(pb.StatusRequest(), metadata=auth.bearer(self.token),
                                                    timeout=5)
        finally:
            channel.close()

    def alive_nodes(self) -> list[pb.NodeStatus]:
        return [n for n in self.status().nodes if n.alive]

    def wait_for_nodes(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.head.poll() is not None:
                raise RuntimeError(f"the head exited:\n{self.logs[0].read_text()[-3000:]}")
            try:
                if len(self.alive_nodes()) == count:
                    return
            except (OSError, grpc.RpcError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{count} nodes did not come up; logs:\n" +
                           "\n".join(p.read_text()[-1500:] for p in self.logs))

    def wait_until(self, predicate, timeout: float, what: str) -> float:
        """Poll ``predicate`` (on the status) until true; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate(self.status()):
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{what} did not happen within {timeout} s: {self.status()}")

    def locate(self, object_id: int) -> list[int]:
        channel = self.channel()
        try:
            reply = pb_grpc.HeadStub(channel).Locate(pb.LocateRequest(object_id=object_id),
                                                     metadata=auth.bearer(self.token), timeout=5)
            return sorted(reply.node_ids)
        finally:
            channel.close()

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL after 15 s) and remove their logs."""
        procs = [*self.nodes, self.head]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self.logs:
            log.unlink(missing_ok=True)


