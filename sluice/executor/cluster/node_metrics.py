"""A node daemon's own Prometheus metrics (``sluice start --metrics-export-port PORT``, as
Ray's): its store's use and capacity, objects on its disk, its worker processes, and the
objects it pulled from other nodes, read when scraped. Served with prometheus_client's
WSGI app on a thread, behind the cluster token (``Authorization: Bearer TOKEN``) as the
head's dashboard is. The head's ``/metrics`` has the whole cluster's figures, per node."""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # (a scrape every few seconds is not news)


class _NodeCollector:
    """The figures of ``node`` (a :class:`~sluice.executor.cluster.node.NodeDaemon`)."""

    def __init__(self, node: Any):
        self.node = node

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from sluice.executor.cluster.node import store_bytes

        node = self.node
        labels = ["node"]
        node_id = [str(node.node_id)]
        with node.lock:
            procs = list(node.procs.values())
        try:
            on_disk = len(os.listdir(node.spill_dir))
        except OSError:
            on_disk = 0
        for family, value in (
                (GaugeMetricFamily("sluice_node_object_store_used_bytes",
                                   "Bytes of this node's objects in shared memory",
                                   labels=labels), store_bytes(node.session)),
                (GaugeMetricFamily("sluice_node_object_store_capacity_bytes",
                                   "Bytes this node's store may hold before it spills",
                                   labels=labels), node.store_capacity),
                (GaugeMetricFamily("sluice_node_objects_on_disk",
                                   "Objects this node's store has spilled to its disk now",
                                   labels=labels), on_disk),
                (GaugeMetricFamily("sluice_node_workers", "Worker processes alive on this node",
                                   labels=labels), sum(p.poll() is None for p in procs)),
                (CounterMetricFamily("sluice_node_object_transfers",
                                     "Objects this node pulled from other nodes",
                                     labels=labels), node.flight.pulls),
                (CounterMetricFamily("sluice_node_object_transfer_bytes",
                                     "Bytes of the objects this node pulled from other nodes",
                                     labels=labels), node.flight.pulled_bytes)):
            family.add_metric(node_id, float(value))
            yield family


def listen(host: str, port: int) -> _Server:
    """A server bound to ``host:port``, not serving yet (see :func:`serve`): a node takes
    its port before it joins, so a port in use is refused (an ``OSError`` naming it)
    before the cluster ever sees the node."""
    try:
        import prometheus_client  # noqa: F401 - (checked here, before the node joins)
    except ImportError:
        raise OSError("a node's --metrics-export-port needs prometheus_client: "
                      "pip install 'sluice[dashboard]'") from None
    try:
        return make_server(host, port, _unavailable, server_class=_Server,
                           handler_class=_Quiet)
    except OSError as err:
        raise OSError(f"--metrics-export-port {port}: cannot listen on {host}:{port} ({err}); "
                      f"give a free port") from None


def _unavailable(environ: dict, start_response: Any) -> Any:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"the node is still joining its cluster\n"]


def serve(server: _Server, node: Any, token: str) -> None:
    """Serve ``node``'s metrics on ``server`` (from :func:`listen`), at any path, to holders
    of ``token``, on a daemon thread; ``server.shutdown()`` stops it."""
    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(node))
    metrics = make_wsgi_app(registry)
    expected = f"Bearer {token}"

    def guarded(environ: dict, start_response: Any) -> Any:
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", ""), expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"give the cluster token: Authorization: Bearer TOKEN\n"]
        return metrics(environ, start_response)

    server.set_app(guarded)
    threading.Thread(target=server.serve_forever, name="sluice-node-metrics",
                     daemon=True).start()
