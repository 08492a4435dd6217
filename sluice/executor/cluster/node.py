"""A node daemon: one per machine, it runs worker processes for the head.

It registers with the head, heartbeats once a second, serves its store over
Arrow Flight (``sluice/store/transfer.py``) and relays its workers' pipes over
one gRPC stream: worker batches go up unchanged, the head's batches come down
to the worker they name. Workers are the local runtime's worker processes; in
a cluster their segments carry this node's session, and they pull objects held
elsewhere through this node's Flight server.

When the head declares the node dead, or its stream to the head ends, the node
stops its workers, removes its segments and exits. Its workers are forked from
a template process, as the local runtime's are (:mod:`sluice.executor.process`),
and die with the node if it is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from multiprocessing.connection import Connection, wait
from typing import Any

import grpc

from sluice.executor import logs
from sluice.executor.cluster import auth, node_metrics
from sluice.executor.cluster import cluster_pb2 as pb
from sluice.executor.cluster import cluster_pb2_grpc as pb_grpc
from sluice.executor.cluster.relay import Outbox, frames_of, unpack_control
from sluice.executor.process import spawn_worker, start_template
from sluice.executor.resources import with_default_memory
from sluice.executor.runtime import SPILL_PREFIX, default_store_memory
from sluice.executor.runtime_env import builds_venv_on_node
from sluice.store import shm, transfer
from sluice.store.transfer import StoreServer

HEARTBEAT_S = 1.0


class NodeDaemon:
    """The processes and store of one machine in a cluster. See the module docstring."""

    def __init__(self, head: str, token: str, num_cpus: float | None = None,
                 num_gpus: float | None = None, resources: dict[str, float] | None = None,
                 bind: str = "127.0.0.1", advertise: str | None = None, flight_port: int = 0,
                 tls: tuple[bytes, bytes] | None = None, tls_root: bytes | None = None,
                 object_store_memory: int | None = None, metrics_port: int | None = None):
        from sluice.executor.cluster.head import local_hostname
        from sluice.executor.runtime import detect_gpus

        # Its own metrics port first: one in use is refused before anything starts.
        self.metrics_server = (node_metrics.listen(bind, metrics_port)
                               if metrics_port is not None else None)
        transfer.keep_heap_memory()  # warm buffers for Flight transfers (see its docstring)
        self.head_address = head
        self.token = token
        self.session = shm.new_session_id()
        cpus = float(num_cpus if num_cpus is not None else (os.cpu_count() or 1))
        gpus = float(num_gpus if num_gpus is not None else detect_gpus())
        self.total = with_default_memory({"CPU": cpus, "GPU": gpus, **(resources or {})})
        self.spill_dir = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{self.session}-")
        self.flight = StoreServer(token, host=bind, port=flight_port, tls=tls, advertise=advertise,
                                  tls_root=tls_root, spill_dir=self.spill_dir)
        self.tls_root = tls_root
        self.tls_root_path = None
        if tls_root is not None:
            self.tls_root_path = str(auth.cluster_dir() / f"tls-root-{self.session}.pem")
            with open(self.tls_root_path, "wb") as f:
                f.write(tls_root)
        host, port = auth.parse_address(head)
        self.channel = auth.open_channel(host, port, tls_root)
        self.stub = pb_grpc.HeadStub(self.channel)
        self.metadata = auth.bearer(token)
        self.store_capacity = int(object_store_memory or default_store_memory())
        info = pb.NodeInfo(host=advertise or bind, hostname=local_hostname(),
                           flight_location=self.flight.location, resources_json=json.dumps(self.total),
                           store_capacity=self.store_capacity,
                           pid=os.getpid(), session=self.session)
        try:
            self.node_id = self.stub.RegisterNode(info, metadata=self.metadata, timeout=10).node_id
        except grpc.RpcError as err:
            self.flight.shutdown()
            if self.metrics_server is not None:
                self.metrics_server.server_close()
            self.remove_files()
            raise auth.auth_error(err, head) from None
        self.template = start_template()  # forks this node's workers (as the local runtime's)
        self.up = Outbox()
        self.up.control(("hello", self.node_id))
        self.procs: dict[int, Any] = {}
        self.conns: dict[Connection, int] = {}
        self.by_index: dict[int, Connection] = {}
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=f, name=f"sluice-node-{f.__name__}", daemon=True)
                        for f in (self.read_head, self.read_workers, self.heartbeat)]
        self.downlink = self.stub.NodeChannel(iter(self.up), metadata=self.metadata)
        for t in self.threads:
            t.start()
        # Its workers' output goes to the head, which shows it at their jobs' drivers.
        self.log_monitor = logs.LogMonitor(logs.log_dir(self.session), self.send_logs)
        if self.metrics_server is not None:  # (its own; the head's /metrics has every node's)
            node_metrics.serve(self.metrics_server, self, token)

    def send_logs(self, lines: list[logs.LogLine]) -> None:
        """Hand the head what this node's workers wrote (``("logs", [(index, pid, name,
        stream, text)])``)."""
        self.up.control(("logs", [(ln.index, ln.pid, ln.name, ln.stream, ln.text)
                                  for ln in lines]))

    # -- head -> node --------------------------------------------------------------------
    def read_head(self) -> None:
        try:
            for frame in frames_of(self.downlink):
                if frame.worker:
                    conn = self.by_index.get(frame.worker)
                    if conn is not None:
                        try:
                            conn.send_bytes(frame.payload)
                        except OSError:
                            pass  # the worker died; its EOF reaches the head as "exited"
                    continue
                msg = unpack_control(frame.payload)
                if msg[0] == "spawn":
                    self.spawn(msg[1], msg[2] if len(msg) > 2 else None)
                elif msg[0] == "signal":
                    proc = self.procs.get(msg[1])
                    if proc is not None and proc.poll() is None:
                        proc.send_signal(msg[2])
                elif msg[0] == "unlink":  # freed: in memory or on disk
                    for name in msg[1]:
                        shm.unlink_segment(name)
                        transfer.remove_spilled(self.spill_dir, name)
                elif msg[0] == "spill":  # the head says the store is over its capacity
                    for name in msg[1]:
                        transfer.spill(self.spill_dir, name)
                elif msg[0] == "shutdown":
                    break
        except grpc.RpcError:
            pass
        self.stop()

    def spawn(self, index: int, overrides: dict[str, str] | None = None) -> None:
        """Start worker ``index``, with ``overrides`` (its runtime_env's variables) set; one
        that builds a pip virtualenv starts as a fresh interpreter, not from the template
        (whose numpy the virtualenv may replace)."""
        env = {**(overrides or {}), "SLUICE_NODE_FLIGHT": self.flight.location,
               "SLUICE_TOKEN": self.token}
        if self.tls_root_path:
            env["SLUICE_TLS_ROOT"] = self.tls_root_path
        if self.template is not None and not builds_venv_on_node(env):
            proc, conn = self.template.spawn(self.session, index, env)
        else:
            proc, conn = spawn_worker(self.session, index, env)
        with self.lock:
            self.procs[index] = proc
            self.conns[conn] = index
            self.by_index[index] = conn
        os.write(self.wake_w, b"x")

    # -- workers -> head -------------------------------------------------------------------
    def read_workers(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                conns = list(self.conns)
            for c in wait([self.wake_r, *conns]):
                if c == self.wake_r:
                    os.read(self.wake_r, 4096)
                    continue
                index = self.conns[c]
                try:
                    data = c.recv_bytes()
                except (EOFError, OSError):
                    self.worker_exited(c, index)
                    continue
                try:
                    self.up.send(index, data)
                except BrokenPipeError:  # the stream to the head is closed: stopping
                    return

    def worker_exited(self, conn: Connection, index: int) -> None:
        with self.lock:
            self.conns.pop(conn, None)
            self.by_index.pop(index, None)
            proc = self.procs.pop(index, None)
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=5)
            except Exception:
                proc.kill()
                code = proc.wait()
        conn.close()
        if not self.up.closed:
            self.up.control(("exited", index, code))

    def heartbeat(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                ack = self.stub.Heartbeat(pb.NodeLoad(node_id=self.node_id, store_used=store_bytes(
                    self.session)), metadata=self.metadata, timeout=5)
            except grpc.RpcError:
                continue  # the stream's end decides whether the head is gone
            if not ack.known:  # declared dead (e.g. after a long pause): leave for good
                self.stop()
                return

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the workers, remove this node's segments, leave the cluster."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.log_monitor.stop()  # (what the workers wrote last goes up first)
        self.up.close()
        os.write(self.wake_w, b"x")
        with self.lock:
            procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except Exception:
                pass
        if self.template is not None:
            self.template.close()
        self.flight.shutdown()
        shm.cleanup_session(self.session)
        self.remove_files()
        self.channel.close()

    def remove_files(self) -> None:
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        if self.tls_root_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tls_root_path)

    def wait(self) -> None:
        self.stopped.wait()


def store_bytes(session: str) -> int:
    """Bytes of this node's segments now in /dev/shm."""
    prefix = shm.segment_name(session, 0)[:-1]
    total = 0
    try:
        for entry in os.scandir(shm.SHM_DIR):
            if entry.name.startswith(prefix):
                try:
                    total += entry.stat().st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total
