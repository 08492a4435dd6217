"""A driver connected to a sluice cluster: ``sluice.init(address="sluice://HOST:PORT")``.

The driver speaks to the head exactly as a worker speaks to a local driver
(:class:`~sluice.executor.worker_api.WorkerAPI`: SUBMIT, GET, PUT, ... in
batches), over one gRPC stream; it is the :class:`~sluice.executor.backend.Backend`
of a cluster's driver. On a machine that runs a node it shares that node's
store: large puts are written there, and objects elsewhere are pulled there
once and mapped. A driver on a machine without a node uploads its puts
to a node and reads results over Arrow Flight into its own memory.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from typing import Any

import grpc

from sluice.exceptions import ObjectLostError
from sluice.executor import logs
from sluice.executor import protocol as P
from sluice.executor.cluster import auth
from sluice.executor.cluster import cluster_pb2_grpc as pb_grpc
from sluice.executor.cluster.relay import Outbox, frames_of
from sluice.executor.object_ref import ObjectRef
from sluice.executor.resources import ResourceKey, demand_key
from sluice.executor.strategies import PlacementGroupSchedulingStrategy
from sluice.executor.worker_api import WorkerAPI
from sluice.store import serialization, shm, transfer

FLUSH_AT = 256
"""Messages a driver batches before it sends at once."""
FLUSH_DELAY_S = 0.0005
"""Otherwise submissions wait at most this long to travel together."""


class _StreamConn:
    """``send_bytes`` into the driver's stream to the head."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def send_bytes(self, data: bytes) -> None:
        self.outbox.send(0, data)


class _Lost:
    """The answer to every request still open when the connection to the head ends."""

    def __init__(self, error: Exception):
        self.error = error


class ClusterClient(WorkerAPI):
    """The Backend of a driver connected to a cluster head. See the module docstring."""

    is_driver = True

    def __init__(self, address: str, token: str, tls_root: bytes | None = None,
                 namespace: str | None = None):
        from sluice.executor.cluster.head import local_hostname

        host, port = auth.parse_address(address)
        self.address = address
        self.token = token
        self.tls_root = tls_root
        self.channel = auth.open_channel(host, port, tls_root)
        self.up = Outbox()
        self.up.control({"hostname": local_hostname(), "pid": os.getpid(), "namespace": namespace})
        stub = pb_grpc.HeadStub(self.channel)
        self.downlink = frames_of(stub.Connect(iter(self.up), metadata=auth.bearer(token)))
        try:
            welcome = pickle.loads(next(self.downlink).payload)
        except grpc.RpcError as err:
            self.up.close()
            self.channel.close()
            raise auth.auth_error(err, address) from None
        super().__init__(_StreamConn(self.up), welcome["session"], welcome["index"])
        self.main_thread = None  # replies arrive on the reader thread, for every caller
        self.flight = welcome["flight"]
        self.same_machine = welcome["same_machine"]
        self.closed = False
        self.shut = False
        # Shows its workers' output (init sets None for log_to_driver=False).
        self.printer: logs.ConsolePrinter | None = logs.ConsolePrinter()
        self.lost: Exception | None = None
        self.kick = threading.Event()
        self.feasible: set = set()
        for target in (self.read, self.flusher):
            threading.Thread(target=target, name=f"sluice-driver-{target.__name__}", daemon=True).start()

    def read(self) -> None:
        try:
            for frame in self.downlink:
                for msg in P.unpack(frame.payload):
                    code = msg[0]
                    if code in (P.GET_REPLY, P.WAIT_REPLY, P.LOOKUP_REPLY):
                        self.deliver_reply(msg[1], msg[2])
                    elif code == P.RELEASE:
                        for name in msg[1]:
                            self.reader.drop(name)
                    elif code == P.LOG_LINES and self.printer is not None:
                        self.printer([logs.LogLine(*line) for line in msg[1]])
        except grpc.RpcError as err:
            if not self.closed:
                self.lost = auth.auth_error(err, self.address)
        self.closed = True
        lost = self.lost or ConnectionError(f"the connection to the sluice head at {self.address} "
                                            f"ended; call sluice.shutdown() and sluice.init() again")
        for req in list(self.reply_events):
            self.deliver_reply(req, _Lost(lost))

    # -- batching: submissions go out together, as the local runtime's do ---------------------
    def flush(self) -> None:
        """Called after each submission: send soon (a batch at a time), or now if many wait."""
        if len(self.outbox) >= FLUSH_AT:
            self.send_now()
        else:
            self.kick.set()

    def send_now(self) -> None:
        if self.closed:
            raise ConnectionError(f"this driver is no longer connected to the sluice head at "
                                  f"{self.address}; call sluice.shutdown() and sluice.init() again")
        WorkerAPI.flush(self)

    def flusher(self) -> None:
        while not self.closed:
            self.kick.wait()
            self.kick.clear()
            time.sleep(FLUSH_DELAY_S)
            try:
                self.send_now()
            except ConnectionError:
                return

    def remove_local_ref(self, oid: int) -> None:
        """A ref died: tell the head soon (with the next batch), so the object is freed."""
        self.refs.remove(oid)
        self.kick.set()

    def actor_handle_event(self, actor_id: int, delta: int) -> None:
        self.emit((P.ACTOR_HANDLE, delta, actor_id))
        self.kick.set()

    def await_reply(self, req: int, timeout: float | None) -> Any:
        self.send_now()
        value = super().await_reply(req, timeout)
        if type(value) is _Lost:
            raise value.error
        return value

    # -- streaming generators: a GEN_TAKEN or GEN_CLOSE goes soon, not with the next call -----
    def stream_next(self, gid: int, timeout: float | None) -> ObjectRef | None:
        ref = super().stream_next(gid, timeout)
        self.kick.set()
        return ref

    def stream_close(self, gid: int) -> None:
        if not self.closed:
            super().stream_close(gid)
            self.kick.set()

    # -- objects ---------------------------------------------------------------------------
    def put(self, value: Any) -> ObjectRef:
        if self.same_machine:
            return super().put(value)  # written into this machine's node store
        oid = self.new_object_id()
        sobj = serialization.serialize(value)
        if sobj.nbytes <= P.INLINE_MAX:
            spec: tuple = (P.DEP_INLINE, serialization.to_bytes(sobj))
        else:
            size = transfer.upload(self.flight, shm.segment_name(self.session, oid), sobj, self.token,
                                   self.tls_root)
            spec = (P.DEP_SHM, size)
        ref = ObjectRef(oid)
        with self.send_lock:
            self._drain_ref_events()
            self.outbox.append((P.PUT, oid, spec, sobj.contained_ids))
        return ref

    def node_store(self) -> str | None:
        return self.flight if self.same_machine else None

    def read_segment(self, name: str) -> Any:
        try:
            return self.reader.read(name)
        except ObjectLostError:
            if not self.same_machine:
                raise
        transfer.pull(self.flight, self.flight, name, name, self.token, self.tls_root)  # spilled
        return self.reader.read(name)

    def read_remote(self, payload: tuple) -> Any:
        oid, source, name, local_name = payload
        if local_name is None:  # no node on this machine: read it into this process
            return transfer.fetch_value(source, name, self.token, self.tls_root)
        transfer.pull(self.flight, source, name, local_name, self.token, self.tls_root)
        self.emit((P.PULLED, oid, local_name))
        return self.reader.read(local_name)

    # -- submissions: an impossible demand fails here, as on the local runtime ---------------
    def submit_task(self, fn_id: int, fn_bytes: bytes, name: str, args: tuple, kwargs: dict,
                    options: dict) -> list[ObjectRef]:
        self.check_feasible(_demand(options), f"task {name}")
        return super().submit_task(fn_id, fn_bytes, name, args, kwargs, options)

    def create_actor(self, actor_id: int, cls_id: int, cls_bytes: bytes, name: str, args: tuple,
                     kwargs: dict, options: dict) -> None:
        self.check_feasible(_demand(options), f"actor {options['class_name']}")
        super().create_actor(actor_id, cls_id, cls_bytes, name, args, kwargs, options)

    def check_feasible(self, demand: ResourceKey, what: str) -> None:
        if demand in self.feasible:
            return
        super().check_feasible(demand, what)
        self.feasible.add(demand)  # only a yes is kept: a node that joins later may say yes

    def shutdown(self) -> None:
        """Disconnect: the head releases this driver's objects and kills its actors."""
        if self.shut:
            return
        self.shut = True
        if self.printer is not None:
            self.printer.flush_all()
        try:
            self.send_now()  # what is still batched goes first (e.g. the last ref drops)
        except (ConnectionError, OSError):
            pass
        self.closed = True
        self.kick.set()
        self.up.close()
        self.reader.clear()
        self.channel.close()


def _demand(options: dict) -> ResourceKey:
    """The demand to check at once; () for work of a placement group (the head checks its group)."""
    if isinstance(options.get("scheduling_strategy"), PlacementGroupSchedulingStrategy):
        return ()
    key = options.get("_key")
    if key is None:
        key = demand_key(options["num_cpus"], options["num_gpus"], options["resources"])
    return key


def connect(address: Any, token: str | None = None, namespace: str | None = None) -> ClusterClient:
    """Connect this process to the cluster head at ``address`` as its driver."""
    if not isinstance(address, str):
        raise TypeError(f"init(address={address!r}): give the head's address as "
                        f"'sluice://HOST:PORT' (a distributed.Client goes with backend='dask')")
    _, port = auth.parse_address(address)
    found = auth.find_token(port, token)
    root = os.environ.get("SLUICE_TLS_ROOT")
    tls_root = open(root, "rb").read() if root else None
    try:  # without a token, still ask: "no head answers there" is the likelier cause
        return ClusterClient(address, found or "", tls_root, namespace)
    except auth.AuthError:
        if found is not None:
            raise
        raise auth.AuthError(
            f"no token for the sluice cluster at {address}: pass sluice.init(address=..., token=...) "
            f"or set SLUICE_TOKEN (the head prints it at start and keeps it in "
            f"{auth.cluster_dir()}/head-{port}/token on its machine)") from None

