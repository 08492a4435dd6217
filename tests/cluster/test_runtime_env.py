"""Runtime environments on a loopback cluster: env_vars (per task, per actor and the job's
default, merged) reach workers on every node; the driver's working_dir and py_modules travel
through the object store and are unpacked on each node (whose temporary folder differs from
the driver's, so nothing is shared through the file system: SLUICE_RUNTIME_ENV_CACHE); pip is refused with
RuntimeEnvSetupError naming what a cluster supports."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import RuntimeEnvSetupError
from tests.cluster.conftest import LocalCluster

JOB_ENV = {"env_vars": {"SLUICE_T_A": "job", "SLUICE_T_B": "job"}}


def test_a_job_environment_with_pip_fails_init() -> None:  # runs first: no cluster yet
    with pytest.raises(RuntimeEnvSetupError, match="installs no pip packages"):
        sluice.init(address="sluice://127.0.0.1:1", runtime_env={"pip": ["x"]})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    nodes_cache = tmp_path_factory.mktemp("nodes_cache")
    c = LocalCluster(nodes=2, node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']],
                     env={"SLUICE_RUNTIME_ENV_CACHE": str(nodes_cache)})
    try:
        sluice.init(address=c.address, runtime_env=JOB_ENV)
        yield c
    finally:
        sluice.shutdown()
        c.stop()


@sluice.remote
def env_of(*names: str) -> dict:
    return {"flight": os.environ.get("SLUICE_NODE_FLIGHT"), **{n: os.environ.get(n) for n in names}}


@sluice.remote
class EnvActor:
    def read(self, name: str) -> str | None:
        return os.environ.get(name)


def test_env_vars_reach_workers_on_every_node_merged_over_the_jobs(cluster: LocalCluster) -> None:
    seen = set()
    for node in ("n0", "n1"):
        task_env = {"env_vars": {"SLUICE_T_B": node}}
        got = sluice.get(env_of.options(resources={node: 0.01}, runtime_env=task_env)
                         .remote("SLUICE_T_A", "SLUICE_T_B"), timeout=120)
        assert (got["SLUICE_T_A"], got["SLUICE_T_B"]) == ("job", node)
        seen.add(got["flight"])
        plain = sluice.get(env_of.options(resources={node: 0.01}).remote("SLUICE_T_B"), timeout=120)
        assert plain["SLUICE_T_B"] == "job"
    assert len(seen) == 2  # two nodes
    actor = EnvActor.options(runtime_env={"env_vars": {"SLUICE_T_A": "actor"}}).remote()
    assert sluice.get(actor.read.remote("SLUICE_T_A"), timeout=120) == "actor"


def test_pip_is_refused_naming_what_works(cluster: LocalCluster) -> None:
    with pytest.raises(RuntimeEnvSetupError, match="use env_vars there"):
        sluice.get(env_of.options(runtime_env={"pip": ["x"]}).remote(), timeout=120)
    assert sluice.get(env_of.remote("SLUICE_T_A"), timeout=120)["SLUICE_T_A"] == "job"


@sluice.remote
def use_files() -> dict:
    import only_here_cluster_mod
    import single_cluster_mod

    with open("data/greeting.txt") as f:
        greeting = f.read()
    return {"value": only_here_cluster_mod.VALUE, "twice": single_cluster_mod.twice(4),
            "greeting": greeting, "cwd": os.getcwd(), "cache": os.environ["SLUICE_RUNTIME_ENV_CACHE"],
            "log": os.path.exists("run.log"), "flight": os.environ.get("SLUICE_NODE_FLIGHT")}


def test_working_dir_and_py_modules_travel_to_every_node(cluster: LocalCluster, tmp_path) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "only_here_cluster_mod.py").write_text("VALUE = 'shipped'\n")
    (project / "data" / "greeting.txt").write_text("hello")
    (project / "run.log").write_text("noise")
    single = tmp_path / "single_cluster_mod.py"
    single.write_text("def twice(x):\n    return 2 * x\n")
    env = {"working_dir": str(project), "excludes": ["*.log"], "py_modules": [str(single)]}
    flights = set()
    for node in ("n0", "n1"):
        got = sluice.get(use_files.options(resources={node: 0.01}, runtime_env=env).remote(),
                         timeout=120)
        assert (got["value"], got["twice"], got["greeting"], got["log"]) == ("shipped", 8, "hello", False)
        assert got["cwd"].startswith(got["cache"]) and not got["cwd"].startswith(str(tmp_path))
        flights.add(got["flight"])
    assert len(flights) == 2
    with pytest.raises(ModuleNotFoundError):
        sluice.get(use_files.remote(), timeout=120)

