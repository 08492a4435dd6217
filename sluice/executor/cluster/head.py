"""The cluster head: a gRPC server around a scheduler.

Nodes register and heartbeat; each keeps one ``NodeChannel`` stream that
relays its workers' message batches, and drivers keep one ``Connect`` stream.
:class:`HeadRuntime` contains the local
:class:`~sluice.executor.scheduler.Scheduler`, built with the cluster's placement
policy and object locations (:mod:`sluice.executor.cluster.placement`) and its
lineage keeper (:mod:`sluice.executor.cluster.recovery`). gRPC threads hand
arriving batches to the scheduler exactly as the local I/O thread hands pipe
reads to it (``inbox`` + flat combining), so the head runs the same scheduling
code as an embedded runtime. A monitor thread declares a
node dead once it misses heartbeats for :data:`DEAD_AFTER_S` seconds, or at
once when its stream breaks; objects only it held are then rebuilt from lineage
by a rebuild thread, one bounded step per hold of the scheduler lock.
"""

from __future__ import annotations

import errno
import itertools
import json
import pickle
import secrets
import socket
import threading
import time
import traceback
from concurrent import futures
from typing import Any

import grpc

from sluice.executor import logs
from sluice.executor import protocol as P
from sluice.executor.cluster import auth
from sluice.executor.cluster import cluster_pb2 as pb
from sluice.executor.cluster import cluster_pb2_grpc as pb_grpc
from sluice.executor.cluster.directory import ClusterResources, NodeState, ObjectDirectory
from sluice.executor.cluster.lineage import max_lineage_bytes_from
from sluice.executor.cluster.placement import ClusterLocations, ClusterPlacement
from sluice.executor.cluster.recovery import Recovery
from sluice.executor.cluster.relay import (
    Outbox,
    RelayConn,
    RemoteProc,
    frames_of,
    unpack_control,
)
from sluice.executor.io import IOThread
from sluice.executor.records import PENDING, JobInfo, WorkerHandle, anonymous_namespace, job_id_hex
from sluice.executor.scheduler import Scheduler

DEAD_AFTER_S = 5.0
"""A node that sends no heartbeat for this long is declared dead (the bound promised is 10 s)."""
MONITOR_INTERVAL_S = 0.5
REBUILD_PAUSE_S = 0.001
"""Between two steps of a rebuild the lock is free this long, so other threads get it."""


class ClusterIO(IOThread):
    """The head's I/O: batches arrive from gRPC threads, not pipes; this thread only
    applies what those threads could not (the lock was busy) and reaps."""

    def __init__(self, head: HeadRuntime):
        super().__init__()
        self.head = head

    def refresh(self) -> None:
        self.s.conns_changed = False
        self.conn_map = {}

    def deliver(self, w: WorkerHandle, payload: bytes | None) -> None:
        """A batch (or, with None, the end) of process ``w``, from a stream thread."""
        self.s.inbox.append((w, None if payload is None else P.unpack(payload)))
        try:
            self.drain_if_free()
        except Exception:  # a sluice bug: say so, and keep serving every other stream
            traceback.print_exc()
        if self.s.inbox:
            self.wake()

    def handle(self, w: WorkerHandle, batch: list) -> None:
        s = self.s
        client = s.clients.get(w.index) is w
        for msg in batch:
            code = msg[0]
            if code == P.PULLED:
                self.head.directory.add_copy(msg[1], w.node, msg[2])
            elif code == P.ACTOR_HANDLE:
                s.actor_handle_events.append((msg[1], msg[2]))
            elif client:
                self.note_client(w, msg)
        super().handle(w, batch)

    def note_client(self, w: WorkerHandle, msg: tuple) -> None:
        """What a driver holds, so its disconnection can release it."""
        code = msg[0]
        held = self.head.client_state[w.index]
        if code == P.INCREF:
            held["refs"].add(msg[1])
        elif code == P.DECREF:
            held["refs"].discard(msg[1])
        elif code == P.PUT:
            held["refs"].add(msg[1])
        elif code == P.CREATE_ACTOR:
            held["actors"].add(msg[1])
        elif code == P.LOOKUP and msg[2] == "pg" and msg[3][0] == "create":
            gid, lifetime = msg[3][1][0], msg[3][1][4]  # (id, name, bundles, strategy, lifetime, ..)
            if lifetime != "detached":  # removed when this driver goes, as Ray does at a job's end
                held.setdefault("groups", []).append(gid)
        elif code == P.SUBMIT and msg[6]:
            tasks = held["tasks"]
            tasks.add(msg[6][0])  # a task, known by its first result
            if len(tasks) > held["prune_at"]:  # forget finished ones now and then
                objects = self.s.objects
                tasks.intersection_update(
                    [oid for oid in tasks if oid in objects and objects[oid].state == PENDING])
                held["prune_at"] = 2 * len(tasks) + 1024

    def on_death(self, w: WorkerHandle) -> None:
        s = self.s
        head = self.head
        if s.clients.get(w.index) is w:
            head.client_gone(w)
            return
        super().on_death(w)
        head.handles.pop(w.index, None)  # pool workers and actors' processes alike
        node = w.node
        if w.actor is None and node is not None and node.alive and not s.closed:
            pool = sum(1 for x in s.workers if x.node is node and x.alive)
            if pool < max(1, int(node.resources.total.get("CPU", 1))):
                s.start_worker(node)  # keep the node's pool full after a crash


class HeadRuntime:
    """The head's state: a :class:`~sluice.executor.scheduler.Scheduler` built with the
    cluster's placement policy and object directory, the nodes, the connected drivers,
    and the lineage kept to rebuild what a dead node held."""

    def __init__(self, max_lineage_bytes: int | None = None) -> None:  # nodes bring stores, workers
        if max_lineage_bytes is None:
            max_lineage_bytes = max_lineage_bytes_from()
        self.directory = ObjectDirectory()
        self.locations = ClusterLocations(self.directory)
        self.placement = ClusterPlacement(self.locations)
        self.nodes = self.placement.nodes
        self.node_ids = itertools.count(1)
        self.job_numbers = itertools.count(1)  # one job per connected driver
        self.recovery = Recovery(max_lineage_bytes)
        self.io = ClusterIO(self)
        self.scheduler = Scheduler("head", ClusterResources(self.nodes), self.placement,
                                   self.locations, self.io, lineage=self.recovery)
        self.actors = self.scheduler.actor_manager
        self.handles: dict[int, WorkerHandle] = {}  # process index -> handle (pool, actor, driver)
        self.client_state: dict[int, dict] = {}
        self.closed = False
        self.rebuilding = False  # a rebuild thread runs (set and cleared under the lock)
        # Every node's worker output, as the nodes send it up (the dashboard's logs page).
        self.log_copies = logs.LogCopies(logs.log_dir(f"head-{secrets.token_hex(6)}"))
        self.io.start(self.scheduler)

    def handle_for(self, index: int) -> WorkerHandle | None:
        """The head's handle of process ``index`` (a node's worker, an actor or a driver)."""
        w = self.handles.get(index)
        if w is None:  # its first frame: find it among the scheduler's processes
            s = self.scheduler
            with s.locked():
                w = next((x for x in s.all_workers() if x.index == index), None)
                if w is not None and w.alive:
                    self.handles[index] = w
        return w

    # -- nodes -------------------------------------------------------------------------
    def add_node(self, info: pb.NodeInfo) -> NodeState:
        total = json.loads(info.resources_json)
        s = self.scheduler
        with s.locked():
            node = NodeState(next(self.node_ids), info.host, info.hostname, info.flight_location,
                             info.session, total, info.store_capacity, info.pid)
            self.placement.add_node(node)
            if total.get("GPU", 0) > 0:
                s.has_gpus = True
            for _ in range(int(total.get("CPU", 0))):
                s.start_worker(node)
            self.actors.retry_waiting()
            s.dispatch()
            s.flush_all()
        return node

    def node_control(self, node: NodeState, msg: tuple) -> None:
        if msg[0] == "exited":  # ("exited", index, code): one of its processes ended
            w = self.handle_for(msg[1])
            if w is not None and w.alive:
                w.proc.returncode = msg[2]
                self.io.deliver(w, None)
        elif msg[0] == "logs":  # ("logs", [(index, pid, name, stream, text)]): its workers'
            self.forward_logs(node, msg[1])

    def forward_logs(self, node: NodeState, lines: list[tuple]) -> None:
        """Keep a copy of each line, and send it to the driver whose job its worker runs
        (every driver when the worker runs no job's work now), as ``LOG_LINES``."""
        self.log_copies.write(lines)
        s = self.scheduler
        with s.locked():
            drivers = {index: job for index, job in s.client_jobs.items()}
            by_driver: dict[int, list[tuple]] = {}
            for index, pid, name, stream, text in lines:
                w = self.handle_for(index)
                job = s.job_of(w) if w is not None else None
                targets = [i for i, j in drivers.items() if job is None or j is job]
                for target in targets:
                    by_driver.setdefault(target, []).append((pid, name, stream, text, node.host))
            for index, batch in by_driver.items():
                client = s.clients.get(index)
                if client is not None and client.alive:
                    client.out.append((P.LOG_LINES, batch))
                    s.send(client)

    def node_died(self, node: NodeState, why: str) -> None:
        """Declare ``node`` dead: its processes die with it, and what only it held is lost.

        Lost objects turn pending and go to the rebuilds, which a rebuild thread works
        through (:meth:`rebuild`). The work here is linear in the directory and the tasks
        not yet sent, and never follows lineage.
        """
        s = self.scheduler
        with s.locked():
            if not node.alive:
                return
            node.alive = False
            node.outbox.close()
            for w in [x for x in s.all_workers() if x.node is node and x.alive]:
                if s.clients.get(w.index) is w:
                    continue
                w.proc.returncode = -9
                s.inbox.append((w, None))
            s.pgs.node_died(node, str(node.node_id))  # its bundles move to live nodes, or fail
            lost = s.objects_lost(self.directory.node_lost(node))
            self.recovery.lost(lost, (node.describe(), why))
            self.actors.retry_waiting()
            start = self.recovery.pending and not self.rebuilding
            if start:
                self.rebuilding = True
        self.io.drain_if_free()
        self.io.wake()
        if start:
            threading.Thread(target=self.rebuild, name="sluice-rebuild", daemon=True).start()

    def rebuild(self) -> None:
        """Work through the lost objects' rebuilds, one bounded step per hold of the lock."""
        s = self.scheduler
        more = True
        try:
            while more:
                with s.locked():
                    more = not self.closed and self.recovery.step(s)
                    if not more:
                        self.rebuilding = False
                time.sleep(REBUILD_PAUSE_S)
        except Exception:  # a sluice bug: say so; the next node death starts a new thread
            traceback.print_exc()
            with s.locked():
                self.rebuilding = False

    def monitor(self, stop: threading.Event) -> None:
        while not stop.wait(MONITOR_INTERVAL_S):
            now = time.monotonic()
            for node in list(self.nodes.values()):
                if node.alive and now - node.last_heartbeat > DEAD_AFTER_S:
                    self.node_died(node, f"sent no heartbeat for {DEAD_AFTER_S:g} s")

    # -- drivers -----------------------------------------------------------------------
    def add_client(self, hello: dict, outbox: Outbox) -> tuple[WorkerHandle, dict]:
        s = self.scheduler
        with s.locked():
            index = next(s.worker_index)
            w = WorkerHandle(index, RemoteProc(None, index), RelayConn(outbox, index))
            home = next((n for n in self.placement.live_nodes() if n.hostname == hello["hostname"]), None)
            target = home or self.placement.roomiest_node()
            w.node = target  # where its puts are stored
            if home is None:
                self.locations.remote_readers.add(w)
            s.clients[index] = w
            self.handles[index] = w
            self.client_state[index] = {"refs": set(), "actors": set(), "tasks": set(),
                                        "prune_at": 1024}
            s.client_jobs[index] = JobInfo(job_id_hex(next(self.job_numbers)),
                                           hello.get("namespace") or anonymous_namespace())
            welcome = {"index": index, "session": target.session, "flight": target.flight,
                       "same_machine": home is not None}
        return w, welcome

    def client_gone(self, w: WorkerHandle) -> None:
        """A driver disconnected: cancel its tasks, drop its refs, kill its actors (under the lock)."""
        s = self.scheduler
        w.alive = False
        s.clients.pop(w.index, None)
        self.handles.pop(w.index, None)
        self.locations.remote_readers.discard(w)
        s.dirty.discard(w)
        held = self.client_state.pop(w.index)
        s.client_jobs.pop(w.index, None)
        for oid in held["tasks"]:  # not finished: dropped if queued, their workers killed if running
            s.cancel(oid, force=True)
        for oid in held["refs"]:
            s.ref_events.append((-1, oid))
        for reqs in s.requests.values():
            reqs[:] = [r for r in reqs if r.worker is not w]
        s.consumer_gone(w)  # its generators: their producers run on unpaused (or were cancelled)
        for actor_id in held["actors"]:  # a detached actor stays until sluice.kill
            actor = s.actors.get(actor_id)  # (None: it found another's actor by get_if_exists)
            if actor is not None and actor.options.get("lifetime") != "detached":
                self.actors.kill(actor_id, True)
        for gid in held.get("groups", ()):  # a detached group stays until removed
            s.pgs.remove(gid)

    # -- status --------------------------------------------------------------------------
    def status(self) -> pb.ClusterStatus:
        s = self.scheduler
        now = time.monotonic()
        with s.locked():
            nodes = []
            for n in self.nodes.values():
                workers = [w for w in s.all_workers() if w.node is n and w.alive
                           and s.clients.get(w.index) is not w]
                nodes.append(pb.NodeStatus(
                    node_id=n.node_id, host=n.host, alive=n.alive,
                    total_json=json.dumps(n.resources.total),
                    available_json=json.dumps(n.resources.available),
                    workers=len(workers), tasks_running=sum(len(w.inflight) for w in workers),
                    store_used=n.store_used, store_capacity=n.store_capacity,
                    seconds_since_heartbeat=now - n.last_heartbeat, objects_spilled=n.spills))
            return pb.ClusterStatus(nodes=nodes, tasks_queued=sum(len(q) for q in s.ready.values()),
                                    drivers=len(s.clients),
                                    actors=sum(1 for a in s.actors.values()
                                               if a.state != a.DEAD),
                                    objects=len(s.objects),
                                    lineage_bytes=self.recovery.lineage.nbytes,
                                    lineage_records=self.recovery.lineage.count,
                                    max_lineage_bytes=self.recovery.lineage.cap)

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        s = self.scheduler
        with s.locked():
            s.closed = True
            for w in list(s.clients.values()):
                w.conn.outbox.close()
            for node in self.nodes.values():
                if node.alive:
                    node.outbox.control(("shutdown",))
                    node.outbox.close()
        self.io.stop()


class HeadService(pb_grpc.HeadServicer):
    """The head's gRPC methods (see cluster.proto)."""

    def __init__(self, rt: HeadRuntime):
        self.rt = rt

    def RegisterNode(self, request: pb.NodeInfo, context: Any) -> pb.NodeAck:
        node = self.rt.add_node(request)
        return pb.NodeAck(node_id=node.node_id)

    def Heartbeat(self, request: pb.NodeLoad, context: Any) -> pb.HeartbeatAck:
        node = self.rt.nodes.get(request.node_id)
        if node is None or not node.alive:
            return pb.HeartbeatAck(known=False)
        node.last_heartbeat = time.monotonic()
        node.store_used = request.store_used
        return pb.HeartbeatAck(known=True)

    def NodeChannel(self, request_iterator: Any, context: Any):
        request_iterator = frames_of(request_iterator)
        hello = unpack_control(next(request_iterator).payload)
        node = self.rt.nodes.get(hello[1])
        if node is None or not node.alive:
            context.abort(grpc.StatusCode.NOT_FOUND, f"node {hello[1]} is not registered (or was "
                                                     "declared dead); restart its daemon")
        node.connected = True
        threading.Thread(target=self._read_node, args=(node, request_iterator),
                         name=f"sluice-node-{node.node_id}", daemon=True).start()
        yield from node.outbox

    def _read_node(self, node: NodeState, frames: Any) -> None:
        rt = self.rt
        why = "closed its connection to the head"
        try:
            for frame in frames:
                if not node.alive:
                    return
                if frame.worker == 0:
                    rt.node_control(node, unpack_control(frame.payload))
                    continue
                w = rt.handle_for(frame.worker)
                if w is not None and w.alive:
                    rt.io.deliver(w, frame.payload)
        except grpc.RpcError:
            why = "lost its connection to the head"
        if not rt.closed:
            rt.node_died(node, why)

    def Connect(self, request_iterator: Any, context: Any):
        request_iterator = frames_of(request_iterator)
        hello = unpack_control(next(request_iterator).payload)
        outbox = Outbox()
        try:
            w, welcome = self.rt.add_client(hello, outbox)
        except RuntimeError as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        threading.Thread(target=self._read_client, args=(w, request_iterator),
                         name=f"sluice-driver-{w.index}", daemon=True).start()
        yield pb.Frames(frames=[pb.Frame(worker=0, payload=pickle.dumps(welcome))])
        yield from outbox

    def _read_client(self, w: WorkerHandle, frames: Any) -> None:
        try:
            for frame in frames:
                self.rt.io.deliver(w, frame.payload)
        except grpc.RpcError:
            pass
        w.conn.outbox.close()
        self.rt.io.deliver(w, None)

    def Status(self, request: Any, context: Any) -> pb.ClusterStatus:
        return self.rt.status()

    def Locate(self, request: pb.LocateRequest, context: Any) -> pb.Locations:
        directory = self.rt.directory
        with self.rt.scheduler.locked():
            locs = directory.locations.get(request.object_id, {})
            return pb.Locations(node_ids=[n.node_id for n in locs],
                                size=directory.sizes.get(request.object_id, 0))


class Head:
    """A running head: the gRPC server, the scheduler and the heartbeat monitor.

    ``max_lineage_bytes`` caps the lineage kept to rebuild lost objects (default:
    ``SLUICE_MAX_LINEAGE_BYTES``, else 1 GB, as Ray's ``max_lineage_bytes``).
    """

    def __init__(self, port: int = auth.DEFAULT_PORT, bind: str = "127.0.0.1", token: str | None = None,
                 tls: tuple[bytes, bytes] | None = None, max_lineage_bytes: int | None = None):
        self.runtime = HeadRuntime(max_lineage_bytes)
        self.token = token or secrets.token_hex(32)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="sluice-grpc"),
            interceptors=[auth.TokenCheck(self.token)],
            options=[("grpc.max_send_message_length", auth.MAX_MESSAGE),
                     ("grpc.max_receive_message_length", auth.MAX_MESSAGE),
                     ("grpc.so_reuseport", 0)])
        pb_grpc.add_HeadServicer_to_server(HeadService(self.runtime), self.server)
        target = f"{bind}:{port}"
        check_can_listen(bind, port)
        try:
            if tls is not None:
                self.port = self.server.add_secure_port(target, auth.server_credentials(*tls))
            else:
                self.port = self.server.add_insecure_port(target)
        except RuntimeError:  # grpc >= 1.52 raises where older versions returned 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"the sluice head cannot listen on {target}: is port {port} in use? "
                          f"pick another with --port")
        auth.new_token(self.port, self.token)  # where drivers and nodes on this machine find it
        self.stop_event = threading.Event()
        self.server.start()
        self.monitor = threading.Thread(target=self.runtime.monitor, args=(self.stop_event,),
                                        name="sluice-monitor", daemon=True)
        self.monitor.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.runtime.shutdown()
        self.server.stop(grace=0.5).wait()
        auth.forget_token(self.port, self.token)


def check_can_listen(bind: str, port: int) -> None:
    """Raise an OSError of one line when nothing could listen on ``bind:port`` (before gRPC
    tries, which would log its own error first). Binds other than IPv4 addresses are left to gRPC."""
    try:
        socket.inet_aton(bind)
    except OSError:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: TIME_WAIT is no use
        try:
            probe.bind((bind, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise OSError(f"port {port} on {bind} is in use, so the sluice head cannot listen "
                              f"there: stop what listens on it (`sluice stop` for a sluice head "
                              f"this user started) or pick another port with --port") from None
            if err.errno == errno.EADDRNOTAVAIL:
                raise OSError(f"--bind {bind}: not an address of this machine, so the sluice head "
                              f"cannot listen there; give one of its addresses, or 0.0.0.0 for "
                              f"all") from None
            raise OSError(f"the sluice head cannot listen on {bind}:{port}: {err.strerror}") from None


def local_hostname() -> str:
    """The identity of this machine: processes with the same one share its /dev/shm."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"
