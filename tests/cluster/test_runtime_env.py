"""Runtime environments on a loopback cluster: env_vars (per task, per actor and the job's
default, merged) reach workers on every node; files (working_dir, py_modules) and pip are
refused with RuntimeEnvSetupError naming what a cluster supports."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import sluice
from sluice.exceptions import RuntimeEnvSetupError
from tests.cluster.conftest import LocalCluster

JOB_ENV = {"env_vars": {"SLUICE_T_A": "job", "SLUICE_T_B": "job"}}


def test_a_job_environment_with_files_fails_init(tmp_path) -> None:  # runs first: no cluster yet
    with pytest.raises(RuntimeEnvSetupError, match="working_dir"):
        sluice.init(address="sluice://127.0.0.1:1", runtime_env={"working_dir": str(tmp_path)})


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']])
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


def test_files_and_pip_are_refused_naming_what_works(cluster: LocalCluster, tmp_path) -> None:
    for env in ({"working_dir": str(tmp_path)}, {"py_modules": [str(tmp_path)]}, {"pip": ["x"]}):
        with pytest.raises(RuntimeEnvSetupError, match="use env_vars there"):
            sluice.get(env_of.options(runtime_env=env).remote(), timeout=120)
    assert sluice.get(env_of.remote("SLUICE_T_A"), timeout=120)["SLUICE_T_A"] == "job"

