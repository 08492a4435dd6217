"""``sluice start``, ``sluice status`` and ``sluice stop``: the cluster's daemons.

``sluice start --head`` runs the head and a node for its own machine;
``sluice start --address HOST:PORT`` runs a node that joins it. Without
``--block`` the command starts the daemon in the background, waits until it
serves, prints how to reach it and returns.

Each daemon leaves a record, ``daemon-{pid}.json``, in the user's cluster folder
(``{tmp}/sluice-{uid}``, :func:`auth.cluster_dir`), beside its log and the head's
token (``head-{port}/token``). ``sluice stop`` stops every daemon recorded there
(nodes first), or with ``--address HOST:PORT`` only the head on that port and the
nodes that joined it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from sluice.executor.cluster import auth
from sluice.executor.cluster.lineage import check_max_lineage_bytes, max_lineage_bytes_from

COMMANDS = ("start", "status", "stop")
START_TIMEOUT_S = 60.0


def add_parsers(sub: Any) -> None:
    start = sub.add_parser("start", help="start a cluster head (--head) or a node joining one (--address)")
    role = start.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start the head (and a node for this machine)")
    role.add_argument("--address", metavar="HOST:PORT", help="join the head at HOST:PORT as a node")
    start.add_argument("--port", type=int, default=auth.DEFAULT_PORT, help="the head's port (default 6380)")
    start.add_argument("--num-cpus", type=float, default=None,
                       help="CPUs this node offers (default: all; 0 on the head: no workers there)")
    start.add_argument("--num-gpus", type=float, default=None, help="GPUs this node offers")
    start.add_argument("--resources", default=None, metavar="JSON",
                       help='custom resources, e.g. \'{"ssd": 1}\'')
    start.add_argument("--object-store-memory", type=int, default=None, metavar="BYTES")
    start.add_argument("--max-lineage-bytes", type=int, default=None, metavar="BYTES",
                       help="head only: lineage kept to rebuild lost objects; past it the oldest "
                            "objects' goes (default: SLUICE_MAX_LINEAGE_BYTES, else 1 GB)")
    start.add_argument("--bind", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    start.add_argument("--advertise", default=None, metavar="HOST",
                       help="address other machines use to reach this one (default: --bind)")
    start.add_argument("--flight-port", type=int, default=0,
                       help="port of this node's Arrow Flight store server (default: any free one)")
    start.add_argument("--metrics-export-port", type=int, default=None,
                       help="serve this node's Prometheus metrics at /metrics on this port "
                            "(to cluster-token holders; default: none; the head's dashboard "
                            "serves every node's at its /metrics)")
    start.add_argument("--token", default=None,
                       help="the cluster token (default: SLUICE_TOKEN, or the local head's token file)")
    start.add_argument("--tls-cert", default=None, metavar="PEM", help="TLS certificate (all daemons)")
    start.add_argument("--tls-key", default=None, metavar="PEM", help="TLS private key")
    start.add_argument("--block", action="store_true", help="run in the foreground until stopped")
    start.add_argument("--dashboard-port", type=int, default=8265,
                       help="the head's dashboard and job server port (default 8265; 0: any "
                            "free port)")
    start.add_argument("--dashboard-host", default=None,
                       help="where the dashboard listens (default: the --bind address)")
    start.add_argument("--no-dashboard", action="store_true",
                       help="start the head without its dashboard and job server")
    status = sub.add_parser("status", help="nodes, resources, tasks and store use of a cluster")
    status.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="the head (default: the one this machine started, or 127.0.0.1:6380)")
    status.add_argument("--token", default=None)
    stop = sub.add_parser("stop", help="stop the sluice daemons this user started on this machine",
                          description="Stop every sluice daemon this user started on this machine "
                                      "(nodes first), or only one cluster's with --address.")
    stop.add_argument("--address", default=None, metavar="HOST:PORT",
                      help="stop only the head on this port and the nodes that joined it")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "start":
            return start(args)
        if args.command == "status":
            return status(args.address, args.token)
        return stop(args.address)
    except (ValueError, ConnectionError, OSError) as err:
        print(f"sluice {args.command}: error: {err}", file=sys.stderr)
        return 1


# -- start -----------------------------------------------------------------------------------
def start(args: argparse.Namespace) -> int:
    _check_numbers(args)
    resources = _resources(args.resources)
    tls = _tls(args.tls_cert, args.tls_key)
    if args.address is not None:  # the head must answer and take the token before a node starts
        ask_head(args.address, args.token, tls[0] if tls else None)
    if not args.block:
        return _start_background(args)
    if args.head:
        return _run_head(args, resources, tls)
    return _run_node(args, resources, tls)


def _run_head(args: argparse.Namespace, resources: dict | None, tls: tuple | None) -> int:
    from sluice.executor.cluster.head import Head

    head = Head(args.port, args.bind, args.token or os.environ.get("SLUICE_TOKEN"), tls,
                args.max_lineage_bytes or max_lineage_bytes_from())
    node = dashboard = jobs = None
    try:
        host = args.advertise or args.bind
        if args.num_cpus != 0:  # this machine's node: its own process, so it never competes
            node = _start_head_node(args, head)  # with the scheduler for the head's interpreter
        record = {"address": f"{host}:{head.port}"}
        print(f"sluice head serving at sluice://{host}:{head.port}", flush=True)
        print(f"  drivers: sluice.init(address=\"sluice://{host}:{head.port}\")", flush=True)
        print(f"  nodes:   sluice start --address {host}:{head.port} [--token TOKEN]", flush=True)
        print(f"  token:   {auth.head_dir(head.port) / 'token'}", flush=True)
        if not args.no_dashboard:  # (above the executor: loaded by name)
            local = "127.0.0.1" if args.bind == "0.0.0.0" else args.bind
            dashboard, jobs = importlib.import_module("sluice.dashboard.head").start_for_head(
                head, args.dashboard_host or args.bind, args.dashboard_port,
                f"sluice://{local}:{head.port}")
            if dashboard is not None:
                record["dashboard"] = dashboard.url
        auth.write_daemon_record("head", os.getpid(), record)
        _wait_for_signal(None)
    finally:
        if jobs is not None:
            jobs.stop_all()
        if dashboard is not None:
            dashboard.stop()
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
        head.stop()
        auth.forget_daemon(os.getpid())
    return 0


def _start_head_node(args: argparse.Namespace, head: Any) -> subprocess.Popen:
    """Start the node of the head's machine and wait until it has joined."""
    argv = _argv_of(args)
    argv[1:2] = ["--address", f"{'127.0.0.1' if args.bind == '0.0.0.0' else args.bind}:{head.port}"]
    argv = [a for i, a in enumerate(argv) if a != "--port" and (i == 0 or argv[i - 1] != "--port")]
    for flag in ("--token", "--max-lineage-bytes"):  # the node finds the token; lineage is the head's
        argv = [a for i, a in enumerate(argv) if a != flag and (i == 0 or argv[i - 1] != flag)]
    env = {**os.environ, "SLUICE_TOKEN": head.token}
    proc = subprocess.Popen([sys.executable, "-m", "sluice.cli", *argv, "--block"], env=env,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not head.runtime.nodes:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise OSError(f"the head's own node did not start (status {proc.poll()})")
        time.sleep(0.02)
    return proc


def _run_node(args: argparse.Namespace, resources: dict | None, tls: tuple | None) -> int:
    from sluice.executor.cluster.node import NodeDaemon

    token = auth.find_token(auth.parse_address(args.address)[1], args.token)
    node = NodeDaemon(args.address, token, args.num_cpus, args.num_gpus, resources, args.bind,
                      args.advertise, args.flight_port, tls, tls[0] if tls else None,
                      args.object_store_memory, args.metrics_export_port)
    try:
        auth.write_daemon_record("node", os.getpid(), {"address": args.address, "node_id": node.node_id})
        print(f"sluice node {node.node_id} joined {args.address} (store: {node.flight.location})",
              flush=True)
        _wait_for_signal(node.stopped)
    finally:
        node.stop()
        auth.forget_daemon(os.getpid())
    return 0


def _wait_for_signal(also: threading.Event | None) -> None:
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(0.2):
        if also is not None and also.is_set():
            return


def _start_background(args: argparse.Namespace) -> int:
    argv = _argv_of(args)
    log = auth.cluster_dir() / f"{'head' if args.head else 'node'}-{int(time.time() * 1000)}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sluice.cli", *argv, "--block"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text()
            said = [line for line in text.splitlines() if line.startswith(_ERROR_PREFIX)]
            if said:  # the daemon refused with a clear message: that message alone
                raise OSError(said[-1][len(_ERROR_PREFIX):])
            raise OSError(f"the daemon exited at start (status {proc.returncode}):\n"
                          f"{text[-2000:]}\n(log: {log})")
        if any(rec.get("pid") == proc.pid for _, rec in auth.daemon_records()):
            print(log.read_text().strip())
            print(f"  log:     {log}")
            return 0
        time.sleep(0.05)
    proc.kill()
    raise OSError(f"the daemon did not come up within {START_TIMEOUT_S:g} s; see {log}")


def _argv_of(args: argparse.Namespace) -> list[str]:
    argv = ["start", "--head"] if args.head else ["start", "--address", args.address]
    for flag in ("port", "num_cpus", "num_gpus", "resources", "object_store_memory", "max_lineage_bytes",
                 "bind", "advertise", "flight_port", "metrics_export_port", "token", "tls_cert",
                 "tls_key"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if args.head:
        argv += ["--dashboard-port", str(args.dashboard_port)]
        if args.dashboard_host:
            argv += ["--dashboard-host", args.dashboard_host]
        if args.no_dashboard:
            argv.append("--no-dashboard")
    return argv


# -- status / stop ----------------------------------------------------------------------------
_ERROR_PREFIX = "sluice start: error: "


def ask_head(address: str, token: str | None, tls_root: bytes | None) -> Any:
    """The head's Status reply; a ConnectionError saying what to do when no head answers at
    ``address``, or when it refuses the token (the one given, ``SLUICE_TOKEN`` or the token
    file of a head on this machine; none at all is asked with too, to tell the cases apart)."""
    import grpc

    from sluice.executor.cluster import cluster_pb2 as pb
    from sluice.executor.cluster import cluster_pb2_grpc as pb_grpc

    host, port = auth.parse_address(address)
    found = auth.find_token(port, token)
    channel = auth.open_channel(host, port, tls_root)
    try:
        return pb_grpc.HeadStub(channel).Status(pb.StatusRequest(), metadata=auth.bearer(found or ""),
                                                timeout=10)
    except grpc.RpcError as err:
        if found is None and err.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise auth.AuthError(f"the sluice head at {address} wants its token: pass --token or "
                                 f"set SLUICE_TOKEN (the head printed where its token file is)") from None
        raise auth.auth_error(err, address) from None
    finally:
        channel.close()


def status(address: str | None, token: str | None) -> int:
    given = address
    address = address or _local_head() or f"127.0.0.1:{auth.DEFAULT_PORT}"
    root = os.environ.get("SLUICE_TLS_ROOT")
    try:
        st = ask_head(address, token, open(root, "rb").read() if root else None)
    except auth.NoHeadError:
        if given is None and _local_head() is None:
            raise auth.NoHeadError(
                f"no sluice head started on this machine is running, and none answers at {address} "
                f"(the default): start one with `sluice start --head`, or give a running head's "
                f"--address HOST:PORT") from None
        raise
    print(f"sluice cluster at {address}: {sum(n.alive for n in st.nodes)} live node(s), "
          f"{st.drivers} driver(s), {st.actors} actor(s), {st.tasks_queued} task(s) queued, "
          f"{st.objects} object(s); lineage of {st.lineage_records} task(s) kept, "
          f"{_size(st.lineage_bytes)} of {_size(st.max_lineage_bytes)}")
    for n in st.nodes:
        total, free = json.loads(n.total_json), json.loads(n.available_json)
        res = ", ".join(f"{k} {free.get(k, 0):g}/{v:g} free" for k, v in total.items() if v)
        state = "alive" if n.alive else "DEAD"
        print(f"  node {n.node_id} {n.host:<15} {state:<5} {res}; {n.workers} workers, "
              f"{n.tasks_running} task(s) running; store {n.store_used / 1e6:.1f}/"
              f"{n.store_capacity / 1e6:.0f} MB ({n.objects_spilled} spilled); "
              f"heartbeat {n.seconds_since_heartbeat:.1f} s ago")
    return 0


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def stop(address: str | None = None) -> int:
    """Stop this user's daemons on this machine (nodes first), or only those of the cluster
    whose head is at ``address``."""
    records = auth.daemon_records()
    if address is not None:
        records = [(path, rec) for path, rec in records if _of_cluster(rec, address)]
    stopped = 0
    for path, rec in sorted(records, key=lambda r: r[1]["kind"] == "head"):  # nodes first
        pid, start = rec["pid"], rec.get("start")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid, start):
            time.sleep(0.05)
        if _alive(pid, start):
            os.kill(pid, signal.SIGKILL)
        path.unlink(missing_ok=True)
        stopped += 1
        print(f"stopped the sluice {rec['kind']} (pid {pid})")
    if not stopped:
        where = f" for the head at {address}" if address is not None else ""
        print(f"no sluice daemons{where} started on this machine are running "
              f"(their records are in {auth.cluster_dir()})")
    return 0


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "::1", "[::1]")


def _of_cluster(record: dict, address: str) -> bool:
    """Whether a daemon record belongs to the cluster whose head is at ``address``: the head
    on that port, or a node that joined a head on that port (by this address, or by a local
    one when the head runs here)."""
    if not record.get("address"):
        return False
    host, port = auth.parse_address(address)
    rec_host, rec_port = auth.parse_address(record["address"])
    if rec_port != port:
        return False
    return (record.get("kind") == "head" or rec_host == host
            or rec_host in _LOCAL_HOSTS or host in _LOCAL_HOSTS)


def _alive(pid: int, start: str | None) -> bool:
    from sluice.executor.process import process_alive

    try:  # reap it if it is our child (a daemon started by this very command)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    return process_alive(pid, start)


def _local_head() -> str | None:
    for _, rec in auth.daemon_records():
        if rec.get("kind") == "head":
            return rec.get("address")
    return None


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse out-of-range numbers before anything starts (gRPC would bind elsewhere)."""
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: give a TCP port from 1 to 65535")
    if not 0 <= args.flight_port <= 65535:
        raise ValueError(f"--flight-port {args.flight_port}: give a TCP port from 1 to 65535, "
                         f"or 0 for any free one")
    if args.metrics_export_port is not None and not 1 <= args.metrics_export_port <= 65535:
        raise ValueError(f"--metrics-export-port {args.metrics_export_port}: give a TCP port "
                         f"from 1 to 65535")
    for flag, value in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} {value:g}: give a number >= 0")
    if args.object_store_memory is not None and args.object_store_memory <= 0:
        raise ValueError(f"--object-store-memory {args.object_store_memory}: give a positive "
                         f"number of bytes")
    if args.max_lineage_bytes is not None:
        if not args.head:
            raise ValueError(f"--max-lineage-bytes {args.max_lineage_bytes}: the head keeps lineage; "
                             f"give it to `sluice start --head`")
        check_max_lineage_bytes(args.max_lineage_bytes, f"--max-lineage-bytes {args.max_lineage_bytes}")
    elif args.head:
        max_lineage_bytes_from()  # a bad SLUICE_MAX_LINEAGE_BYTES is refused before anything starts


def _resources(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"--resources {text!r}: give a JSON object, e.g. '{{\"ssd\": 1}}'") from None
    if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise ValueError(f"--resources {text!r}: give a JSON object of numbers >= 0, "
                         f"e.g. '{{\"ssd\": 1}}'")
    for name in ("CPU", "GPU"):
        if name in value:
            raise ValueError(f"--resources {text!r}: set {name} with --num-{name.lower()}s, "
                             f"not in --resources")
    return value


def _tls(cert: str | None, key: str | None) -> tuple[bytes, bytes] | None:
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together: give both PEM files")
    if cert is None:
        return None
    pems = []
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb") as f:
                pems.append(f.read())
        except OSError as err:
            raise ValueError(f"{flag} {path}: cannot read it ({err.strerror})") from None
    return pems[0], pems[1]
