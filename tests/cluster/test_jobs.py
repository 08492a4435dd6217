"""Jobs on a 3-node loopback cluster, through the CLI as people submit them: the working
directory reaches the job's tasks on every node, output and status outlive the client,
stopping, failing and unknown jobs; and the head's dashboard answering the state API,
metrics and the timeline for the whole cluster, with its token required."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import ROOT, LocalCluster

SCRIPT = '''
import sluice
from helper import shout

sluice.init()   # a submitted job's driver joins its cluster

@sluice.remote(num_cpus=1)
def where(i):
    import os
    from helper import shout
    return shout(i), os.environ.get("SLUICE_NODE_FLIGHT")

results = sluice.get([where.remote(i) for i in range(12)])
print("words:", " ".join(sorted({w for w, _ in results})))
print("nodes used:", len({n for _, n in results}))
'''


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, dashboard=True)
    try:
        yield c
    finally:
        c.stop()


def sluice_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SLUICE_TOKEN", None)   # found in the head's token file, as on the head's machine
    return subprocess.run([sys.executable, "-m", "sluice.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def test_a_job_with_a_working_dir_runs_on_the_cluster(cluster: LocalCluster,
                                                       tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "script.py").write_text(SCRIPT)
    (project / "helper.py").write_text("def shout(i):\n    return f'word{i % 3}'\n")
    url = cluster.dashboard_url
    out = sluice_cli("job", "submit", "--address", url, "--working-dir", str(project),
                     "--submission-id", "etl-1", "--", "python", "script.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Job 'etl-1' submitted successfully" in out.stdout
    assert "words: word0 word1 word2" in out.stdout        # helper imported on the nodes
    assert "Job 'etl-1' succeeded" in out.stdout
    # after the submitting client is gone: status and output are kept by the head
    status = sluice_cli("job", "status", "etl-1", "--address", url)
    assert "Job 'etl-1': SUCCEEDED" in status.stdout
    logs = sluice_cli("job", "logs", "etl-1", "--address", url)
    assert "words: word0 word1 word2" in logs.stdout
    listing = sluice_cli("job", "list", "--address", url)
    assert any(line.split()[:2] == ["etl-1", "SUCCEEDED"] for line in listing.stdout.splitlines())
    # its tasks ran on the cluster's nodes, as the head's state API says
    tasks = json.loads(sluice_cli("list", "tasks", "--address", url, "--filter", "name=where",
                                  "--format", "json", "--limit", "1000").stdout)
    assert len(tasks) == 12 and {t["state"] for t in tasks} == {"FINISHED"}
    nodes = json.loads(sluice_cli("list", "nodes", "--address", url, "--format", "json").stdout)
    assert len(nodes) == 3 and {n["state"] for n in nodes} == {"ALIVE"}
    assert {t["node_id"] for t in tasks} <= {n["node_id"] for n in nodes}


def test_a_job_can_be_stopped_and_a_failing_job_fails(cluster: LocalCluster) -> None:
    url = cluster.dashboard_url
    out = sluice_cli("job", "submit", "--address", url, "--no-wait", "--submission-id",
                     "sleepy", "--", "python", "-c",
                     "import time; print('started', flush=True); time.sleep(600)")
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 120
    while "started" not in sluice_cli("job", "logs", "sleepy", "--address", url).stdout:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    assert "RUNNING" in sluice_cli("job", "status", "sleepy", "--address", url).stdout
    assert "stopped" in sluice_cli("job", "stop", "sleepy", "--address", url).stdout
    assert "STOPPED" in sluice_cli("job", "status", "sleepy", "--address", url).stdout
    failing = sluice_cli("job", "submit", "--address", url, "--", "python", "-c",
                         "raise SystemExit('the job gives up')")
    assert failing.returncode == 1 and "the job gives up" in failing.stdout
    assert "failed" in failing.stdout.splitlines()[-1]
    unknown = sluice_cli("job", "status", "nope", "--address", url)
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr
    empty = sluice_cli("job", "submit", "--address", url)
    assert empty.returncode == 2 and "give the command to run after --" in empty.stderr


def test_the_heads_dashboard_serves_metrics_and_the_timeline_to_token_holders(
        cluster: LocalCluster) -> None:
    url = cluster.dashboard_url
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "/api/v0/nodes", timeout=30)
    assert refused.value.code == 401
    headers = {"Authorization": f"Bearer {cluster.token}"}
    request = urllib.request.Request(url + "/metrics", headers=headers)
    text = urllib.request.urlopen(request, timeout=30).read().decode()
    alive = [line for line in text.splitlines() if line.startswith("sluice_node_alive{")]
    assert len(alive) == 3 and all(line.endswith(" 1.0") for line in alive)
    request = urllib.request.Request(url + "/api/v0/timeline", headers=headers)
    trace = json.load(urllib.request.urlopen(request, timeout=30))
    nodes = {e["pid"] for e in trace if e["ph"] == "X" and e["name"] == "where"}
    assert nodes and all(n.startswith("node ") for n in nodes)


def test_jobs_from_python_with_rays_names(cluster: LocalCluster, tmp_path: Path) -> None:
    import asyncio

    from sluice.job_submission import JobStatus, JobSubmissionClient

    os.environ.pop("SLUICE_TOKEN", None)
    client = JobSubmissionClient(cluster.dashboard_url)
    (tmp_path / "data.txt").write_text("payload from the working dir\n")
    job = client.submit_job(entrypoint="python -c \"print(open('data.txt').read().strip())\"",
                            runtime_env={"working_dir": str(tmp_path)},
                            metadata={"owner": "tests"})
    assert job.startswith("raysubmit_")

    async def tail() -> str:
        return "".join([chunk async for chunk in client.tail_job_logs(job)])

    assert "payload from the working dir" in asyncio.run(tail())
    assert client.wait_until_done(job, timeout_s=120) is JobStatus.SUCCEEDED
    info = client.get_job_info(job)
    assert info.metadata == {"owner": "tests"} and info.driver_exit_code == 0
    assert job in {j.submission_id for j in client.list_jobs()}
    page = urllib.request.Request(cluster.dashboard_url + "/jobs",
                                  headers={"Authorization": f"Bearer {cluster.token}"})
    html = urllib.request.urlopen(page, timeout=30).read().decode()
    assert job in html and "SUCCEEDED" in html and "SUBMISSION" in html
    assert client.delete_job(job)
    with pytest.raises(ValueError, match=f"no job '{job}'"):
        client.get_job_status(job)
    with pytest.raises(ValueError, match="is not a folder"):
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(tmp_path / "no")})


def test_a_cluster_workers_output_reaches_its_driver_with_the_node(cluster: LocalCluster,
                                                                   capsys, monkeypatch) -> None:
    import sluice

    @sluice.remote
    def shout(word):
        import os
        print(f"{word} from the cluster")
        return os.getpid()

    sluice.init(address=cluster.address)
    try:
        pid = sluice.get(shout.remote("hi"))
        seen = ""
        deadline = time.monotonic() + 60
        while f"(shout pid={pid}, ip=127.0.0.1) hi from the cluster" not in seen:
            assert time.monotonic() < deadline, f"the line never came: {seen!r}"
            time.sleep(0.05)
            seen += capsys.readouterr().out
    finally:
        sluice.shutdown()
    # The head keeps a copy of every node's worker output: its dashboard serves the file.
    from sluice.util.state import get_log, list_logs

    monkeypatch.setenv("SLUICE_TOKEN", cluster.token)
    files = list_logs(address=cluster.dashboard_url, glob_filter=f"*-{pid}.*")
    assert len(files["worker_out"]) == 1
    assert "hi from the cluster" in list(get_log(address=cluster.dashboard_url, pid=pid))


def test_the_heads_metrics_count_object_transfers_per_node(cluster: LocalCluster) -> None:
    import numpy as np

    import sluice
    from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Affinity

    @sluice.remote
    def make():
        return np.ones(1_000_000)  # 8 MB: it lives in its node's store, not in messages

    @sluice.remote
    def total(array):
        return float(array.sum())

    def scrape() -> dict[str, float]:
        request = urllib.request.Request(cluster.dashboard_url + "/metrics",
                                         headers={"Authorization": f"Bearer {cluster.token}"})
        text = urllib.request.urlopen(request, timeout=30).read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line.startswith("sluice_object_transfer")}

    sluice.init(address=cluster.address)
    try:
        maker, reader = [n["NodeID"] for n in sluice.nodes() if n["Alive"]][:2]
        before = scrape()
        ref = make.options(scheduling_strategy=Affinity(maker, soft=False)).remote()
        summed = total.options(scheduling_strategy=Affinity(reader, soft=False)).remote(ref)
        assert sluice.get(summed) == 1_000_000.0
    finally:
        sluice.shutdown()
    after = scrape()  # (the reader's pull was told to the head before its result)
    pulled = f'sluice_object_transfers_total{{node="{reader}"}}'
    pulled_bytes = f'sluice_object_transfer_bytes_total{{node="{reader}"}}'
    assert after[pulled] >= before.get(pulled, 0) + 1
    assert after[pulled_bytes] >= before.get(pulled_bytes, 0) + 8_000_000


def test_a_node_serves_its_own_metrics_to_token_holders(cluster: LocalCluster) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from sluice.executor.cluster.local import free_port
    from tests.polling import until

    bad = sluice_cli("start", "--address", cluster.address.removeprefix("sluice://"),
                     "--metrics-export-port", "70000")
    assert bad.returncode != 0 and "--metrics-export-port 70000: give a TCP port" in bad.stderr
    with socket.socket() as taken:  # a port in use: refused before the node joins
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        used = taken.getsockname()[1]
        alive = len(cluster.alive_nodes())
        busy = sluice_cli("start", "--address", cluster.address.removeprefix("sluice://"),
                          "--metrics-export-port", str(used))
    assert busy.returncode != 0
    assert f"--metrics-export-port {used}: cannot listen on 127.0.0.1:{used}" in busy.stderr
    assert len(cluster.alive_nodes()) == alive
    port = free_port()
    node = cluster.add_node(["--metrics-export-port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def refusal() -> int | None:  # (the server starts just after the node joins)
            try:
                urllib.request.urlopen(url, timeout=30)
            except urllib.error.HTTPError as err:
                return err.code
            except urllib.error.URLError:
                return None
            return 200

        assert until(refusal) == 401  # no token, no figures

        def scrape() -> dict[str, float]:
            request = urllib.request.Request(url, headers={
                "Authorization": f"Bearer {cluster.token}"})
            text = urllib.request.urlopen(request, timeout=30).read().decode()
            return {s.name: s.value for f in text_string_to_metric_families(text)
                    for s in f.samples}

        # Its one CPU's worker starts as it joins; its store is empty and has not pulled.
        figures = until(lambda: (f := scrape())["sluice_node_workers"] == 1 and f)
        assert figures["sluice_node_object_store_capacity_bytes"] > 0
        assert figures["sluice_node_object_store_used_bytes"] == 0
        assert figures["sluice_node_object_transfers_total"] == 0
    finally:
        node.terminate()
        node.wait(timeout=60)
