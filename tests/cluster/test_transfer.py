"""The data plane between node stores: real Flight servers, two per test, one per "node".

Both nodes share this machine's /dev/shm, but each has its own session, so every
segment name belongs to exactly one node, as on a real cluster.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import flight

from sluice.exceptions import ObjectLostError
from sluice.store import serialization, shm, transfer
from sluice.store.transfer import AuthError, StoreServer
from tests.cluster.conftest import self_signed_cert

TOKEN = "test-cluster-token"


@dataclass
class Node:
    """One node: its store server and the session its segment names belong to."""

    server: StoreServer
    session: str = field(default_factory=shm.new_session_id)
    count: int = 0

    @property
    def location(self) -> str:
        return self.server.location

    def new_name(self) -> str:
        self.count += 1
        return shm.segment_name(self.session, self.count)

    def put(self, value: object) -> str:
        """Write ``value`` as a new segment of this node; return its name."""
        name = self.new_name()
        shm.write_segment(name, serialization.serialize(value))
        return name

    def read(self, name: str) -> object:
        """The value of this node's segment ``name``, copied out of the mapping."""
        reader = shm.SegmentReader()
        try:
            value = reader.read(name)
            return value.copy() if isinstance(value, np.ndarray) else value
        finally:
            reader.clear()

    def close(self) -> None:
        self.server.shutdown()
        shm.cleanup_session(self.session)


def _start_node(tls: tuple[bytes, bytes] | None = None) -> Node:
    return Node(StoreServer(TOKEN, tls=tls))


@pytest.fixture
def node_a() -> Iterator[Node]:
    node = _start_node()
    yield node
    node.close()


@pytest.fixture
def node_b() -> Iterator[Node]:
    node = _start_node()
    yield node
    node.close()


def _partial_files() -> list[str]:
    return glob.glob(os.path.join(shm.SHM_DIR, f"sluice-{os.getpid()}-partial-*"))


def _raw_client(node: Node) -> tuple[flight.FlightClient, flight.FlightCallOptions]:
    """A plain Flight client carrying the token: to look at what the server sends."""
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    return flight.FlightClient(node.location), options


def test_a_200_mb_array_pulled_to_another_node_is_identical(node_a: Node, node_b: Node) -> None:
    array = np.arange(25_000_000, dtype=np.float64)  # 200 MB
    source = node_a.put(array)
    local = node_b.new_name()

    start = time.perf_counter()
    size = transfer.pull(node_b.location, node_a.location, source, local, TOKEN)
    elapsed = time.perf_counter() - start
    print(f"pulled {size / 1e6:.0f} MB in {elapsed:.3f} s: {size / elapsed / 1e9:.2f} GB/s")

    assert (
        size
        == os.path.getsize(shm.segment_path(source))
        == os.path.getsize(shm.segment_path(local))
    )
    assert np.array_equal(node_b.read(local), array)
    assert node_b.server.pulls == 1
    assert node_a.server.pulls == 0
    assert _partial_files() == []


def test_an_arrow_table_travels_as_an_arrow_stream_and_keeps_its_metadata(
    node_a: Node, node_b: Node
) -> None:
    table = pa.table({"x": np.arange(10_000), "s": [f"row {i}" for i in range(10_000)]})
    table = table.replace_schema_metadata({"owner": "etl"})
    source = node_a.put(table)

    client, options = _raw_client(node_a)
    sent = client.do_get(flight.Ticket(source.encode()), options)
    assert sent.schema.metadata[b"sluice.transfer"] == b"arrow"
    assert sent.schema.names == ["x", "s"]  # the table's columns, not one column of bytes
    assert sent.read_all().num_rows == 10_000
    client.close()

    local = node_b.new_name()
    transfer.pull(node_b.location, node_a.location, source, local, TOKEN)
    pulled = node_b.read(local)
    assert isinstance(pulled, pa.Table)
    assert pulled.equals(table, check_metadata=True)


def test_a_record_batch_comes_back_as_a_record_batch(node_a: Node) -> None:
    batch = pa.record_batch({"v": pa.array([1.5, None, 3.0])})
    value = transfer.fetch_value(node_a.location, node_a.put(batch), TOKEN)
    assert isinstance(value, pa.RecordBatch)
    assert value.equals(batch)


def test_concurrent_pulls_of_one_object_transfer_it_once(node_a: Node, node_b: Node) -> None:
    source = node_a.put(np.ones(5_000_000))  # 40 MB: long enough for the calls to overlap
    local = node_b.new_name()
    start_together = threading.Barrier(8)

    def pull_once(_: int) -> int:
        start_together.wait()
        return transfer.pull(node_b.location, node_a.location, source, local, TOKEN)

    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(pull_once, range(8)))

    expected = os.path.getsize(shm.segment_path(source))
    assert sizes == [expected] * 8
    assert node_b.server.pulls == 1
    # Present now: another pull returns its size without transferring again.
    assert transfer.pull(node_b.location, node_a.location, source, local, TOKEN) == expected
    assert node_b.server.pulls == 1
    assert np.array_equal(node_b.read(local), np.ones(5_000_000))


@pytest.mark.parametrize(
    "value", [{"a": [1, 2, None], "b": "text"}, np.arange(1_000_000, dtype=np.int32)]
)
def test_upload_then_fetch_value_round_trips(node_a: Node, value: object) -> None:
    name = node_a.new_name()
    obj = serialization.serialize(value)
    assert transfer.upload(node_a.location, name, obj, TOKEN) == obj.nbytes
    assert os.path.getsize(shm.segment_path(name)) == obj.nbytes

    fetched = transfer.fetch_value(node_a.location, name, TOKEN)
    local = node_a.read(name)  # what a worker on that node maps
    if isinstance(value, np.ndarray):
        assert np.array_equal(fetched, value) and np.array_equal(local, value)
        assert not fetched.flags.writeable  # like every value read from a store
    else:
        assert fetched == value == local


def test_upload_refuses_to_replace_an_existing_segment(node_a: Node) -> None:
    name = node_a.put("first")
    with pytest.raises(FileExistsError, match=f"object segment {name} already exists"):
        transfer.upload(node_a.location, name, serialization.serialize("second"), TOKEN)
    assert node_a.read(name) == "first"


def test_a_wrong_or_missing_token_is_refused(node_a: Node, node_b: Node) -> None:
    source = node_a.put("secret")
    with pytest.raises(AuthError, match="token does not match this cluster's"):
        transfer.fetch_value(node_a.location, source, "not-the-token")
    with pytest.raises(AuthError, match="no sluice cluster token was sent; pass token="):
        transfer.fetch_value(node_a.location, source, "")
    with pytest.raises(AuthError, match="token does not match"):
        transfer.pull(node_b.location, node_a.location, source, node_b.new_name(), "wrong")
    with pytest.raises(AuthError, match="token does not match"):
        transfer.upload(node_a.location, node_a.new_name(), serialization.serialize(1), "wrong")
    with pytest.raises(AuthError, match="token does not match"):
        transfer.unlink(node_a.location, [source], "wrong")
    assert os.path.exists(shm.segment_path(source))
    with pytest.raises(ValueError, match="non-empty cluster token"):
        StoreServer("")


def test_a_node_whose_token_differs_cannot_pull_from_this_cluster(node_a: Node) -> None:
    outsider = Node(StoreServer("another-cluster"))
    try:
        source = node_a.put("x")
        with pytest.raises(AuthError, match="token does not match"):
            transfer.pull(
                outsider.location, node_a.location, source, outsider.new_name(), "another-cluster"
            )
        assert outsider.server.pulls == 0
    finally:
        outsider.close()


@pytest.mark.parametrize("name", ["../etc/passwd", "foo", "sluice-../../etc/passwd", "sluice-a/b"])
def test_names_outside_the_sluice_namespace_are_refused(node_a: Node, name: str) -> None:
    with pytest.raises(ValueError, match="is not a sluice object segment name"):
        transfer.fetch_value(node_a.location, name, TOKEN)
    with pytest.raises(ValueError, match="is not a sluice object segment name"):
        transfer.unlink(node_a.location, [name], TOKEN)
    # The server refuses it too, whatever client sends it.
    client, options = _raw_client(node_a)
    with pytest.raises(flight.FlightServerError, match="is not a sluice object segment name"):
        client.do_get(flight.Ticket(name.encode()), options).read_all()
    with pytest.raises(flight.FlightServerError, match="is not a sluice object segment name"):
        list(client.do_action(flight.Action("unlink", f'["{name}"]'.encode()), options))
    client.close()


def test_a_missing_segment_is_reported_lost(node_a: Node, node_b: Node) -> None:
    missing = node_a.new_name()
    with pytest.raises(ObjectLostError, match=f"object segment {missing} is not on this node"):
        transfer.fetch_value(node_a.location, missing, TOKEN)
    local = node_b.new_name()
    with pytest.raises(ObjectLostError, match=f"object segment {missing} is not on this node"):
        transfer.pull(node_b.location, node_a.location, missing, local, TOKEN)
    assert not os.path.exists(shm.segment_path(local))
    assert node_b.server.pulls == 0
    assert _partial_files() == []


def test_an_unreachable_node_raises_connection_error() -> None:
    node = _start_node()
    node.close()
    with pytest.raises(
        ConnectionError, match=re.escape(f"cannot reach the sluice node store at {node.location}:")
    ):
        transfer.fetch_value(node.location, node.new_name(), TOKEN)


def test_unlink_removes_the_segment_files(node_a: Node) -> None:
    names = [node_a.put(i) for i in range(3)]
    transfer.unlink(node_a.location, [*names[:2], node_a.new_name()], TOKEN)  # one never existed
    assert [os.path.exists(shm.segment_path(name)) for name in names] == [False, False, True]


def test_a_pull_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    node_a, node_b = _start_node(tls=(cert, key)), _start_node(tls=(cert, key))
    try:
        assert node_a.location.startswith("grpc+tls://127.0.0.1:")
        array = np.arange(100_000)
        source, local = node_a.put(array), node_b.new_name()
        size = transfer.pull(node_b.location, node_a.location, source, local, TOKEN, tls_root=cert)
        assert size == os.path.getsize(shm.segment_path(local))
        assert np.array_equal(node_b.read(local), array)
        assert node_b.server.pulls == 1
        # A client that does not trust the certificate cannot talk to the node.
        with pytest.raises(ConnectionError, match="cannot reach the sluice node store"):
            transfer.fetch_value(node_a.location, source, TOKEN)
    finally:
        node_a.close()
        node_b.close()
