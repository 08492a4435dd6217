"""A node in its own network namespace, reached over a veth link that is then cut.

Runs where ``ip netns`` works (root on Linux); skipped elsewhere with the reason.
The head listens on the host end of the link; the node daemon runs inside the
namespace and reaches the head, and the head's node reaches its store, only
through that link. Cutting it (``ip link set ... down``) leaves the node's TCP
connections open but silent: the head must notice by missed heartbeats alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from tests.cluster.conftest import ROOT, LocalCluster, node_info

NS = f"sluice-t{os.getpid()}"
HOST_IF, NS_IF = f"slh{os.getpid() % 10000}", f"sln{os.getpid() % 10000}"
SUBNET = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
HEAD_IP, NODE_IP = f"{SUBNET}.1", f"{SUBNET}.2"


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def netns_unavailable() -> str | None:
    if shutil.which("ip") is None:
        return "the ip command is missing"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{NS}-probe"
    if ip("netns", "add", probe).returncode != 0:
        return "ip netns add is not permitted here"
    ip("netns", "del", probe)
    return None


pytestmark = pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable()))


@pytest.fixture
def split_cluster() -> Iterator[tuple[LocalCluster, subprocess.Popen]]:
    for args in (("netns", "add", NS),
                 ("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF),
                 ("link", "set", NS_IF, "netns", NS),
                 ("addr", "add", f"{HEAD_IP}/24", "dev", HOST_IF),
                 ("link", "set", HOST_IF, "up"),
                 ("netns", "exec", NS, "ip", "addr", "add", f"{NODE_IP}/24", "dev", NS_IF),
                 ("netns", "exec", NS, "ip", "link", "set", NS_IF, "up"),
                 ("netns", "exec", NS, "ip", "link", "set", "lo", "up")):
        done = ip(*args)
        if done.returncode != 0:
            ip("netns", "del", NS)
            ip("link", "del", HOST_IF)
            pytest.skip(f"cannot build the test network: ip {' '.join(args)}: {done.stderr.strip()}")
    cluster = LocalCluster(nodes=0, extra=["--bind", "0.0.0.0", "--advertise", HEAD_IP,
                                           "--resources", '{"near": 1}'])
    env = {**cluster.env, "SLUICE_TOKEN": cluster.token}
    node = subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-m", "sluice.cli", "start", "--address",
         f"{HEAD_IP}:{cluster.port}", "--bind", NODE_IP, "--num-cpus", "1", "--resources",
         '{"far": 1}', "--block"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        cluster.wait_for_nodes(2)
        sluice.init(address=cluster.address)
        yield cluster, node
    finally:
        sluice.shutdown()
        node.send_signal(signal.SIGKILL)
        node.wait()
        cluster.stop()
        ip("netns", "del", NS)
        ip("link", "del", HOST_IF)


@sluice.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@sluice.remote
def total_and_place(a: np.ndarray) -> tuple[int, dict]:
    return int(a.sum()), node_info()


@sluice.remote
def square(x: int) -> int:
    return x * x


def test_objects_cross_the_link_and_a_cut_link_is_detected(split_cluster) -> None:
    cluster, node = split_cluster
    far = {"resources": {"far": 0.01}}
    # Made behind the link, read on the head's side (a Flight pull over the veth pair).
    a = make.options(**far).remote(3_000_000)
    total, place = sluice.get(total_and_place.options(resources={"near": 0.01}).remote(a), timeout=60)
    assert total == sum(range(3_000_000))
    _, far_place = sluice.get(total_and_place.options(**far).remote(a), timeout=60)
    assert far_place["flight"].startswith(f"grpc+tcp://{NODE_IP}:")
    assert place["flight"] != far_place["flight"]
    # Cut the link: the node's connections stay open but carry nothing.
    assert ip("link", "set", HOST_IF, "down").returncode == 0
    cluster.wait_until(lambda st: sum(n.alive for n in st.nodes) == 1, 60, "cut-off node declared dead")
    assert sluice.get([square.remote(i) for i in range(20)], timeout=30) == [i * i for i in range(20)]


DRIVER = """
import sys, numpy as np, sluice
sluice.init(address=sys.argv[1])
client = sluice.executor.context.current()
assert not client.same_machine, "this driver should see no node on its machine"

@sluice.remote
def double_sum(a):
    return int(a.sum()) * 2, np.full(3_000_000, 7, dtype=np.int64)

a = np.arange(4_000_000, dtype=np.int64)        # 32 MB: uploaded to a node over Flight
total, back = sluice.get(double_sum.remote(sluice.put(a)))   # 24 MB read back over Flight
print(total == 2 * int(a.sum()), back.shape, int(back.sum()))
"""


def test_a_driver_on_a_machine_without_a_node_moves_objects_over_flight(split_cluster,
                                                                       tmp_path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is missing: cannot give the driver a machine of its own")
    cluster, _ = split_cluster
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**cluster.env, "SLUICE_TOKEN": cluster.token}
    # Its own network namespace and host name: to sluice, another machine with no node.
    out = subprocess.run(
        ["ip", "netns", "exec", NS, "unshare", "--uts", "sh", "-c",
         f"hostname sluice-far-driver && exec {sys.executable} {script} sluice://{HEAD_IP}:{cluster.port}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip() == "True (3000000,) 21000000", out.stdout + out.stderr[-3000:]
