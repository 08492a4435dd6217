"""Runtime environments on a loopback cluster: env_vars (per task, per actor and the job's
default, merged) reach workers on every node; the driver's working_dir and py_modules travel
through the object store and are unpacked on each node (each node has its own cache folder,
as on its own machine, so nothing is shared through the file system: SLUICE_RUNTIME_ENV_CACHE);
pip builds a virtualenv once on each node that runs the task, a wheel of the driver's
travelling through the object store, and a requirement that cannot install fails its task
with RuntimeEnvSetupError while the node runs on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import RuntimeEnvSetupError
from tests.cluster.conftest import LocalCluster
from tests.executor.test_runtime_env import make_wheel

JOB_ENV = {"env_vars": {"SLUICE_T_A": "job", "SLUICE_T_B": "job"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    caches = tmp_path_factory.mktemp("nodes_cache")
    c = LocalCluster(nodes=2, node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']],
                     env={"SLUICE_RUNTIME_ENV_CACHE": str(caches / "head")},
                     node_env=[{"SLUICE_RUNTIME_ENV_CACHE": str(caches / f"n{i}")} for i in range(2)])
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



def tiny_facts() -> dict:
    """What the calling worker sees of the tiny wheel's package, and where it runs."""
    import importlib.metadata
    import sys

    import sluice_tiny_pkg

    origin = importlib.metadata.distribution("sluice_tiny_pkg").read_text("direct_url.json")
    return {"value": sluice_tiny_pkg.VALUE, "origin": origin, "file": sluice_tiny_pkg.__file__,
            "python": sys.executable, "venv": os.environ.get("VIRTUAL_ENV"),
            "cache": os.environ["SLUICE_RUNTIME_ENV_CACHE"], "env_a": os.environ.get("SLUICE_T_A")}


use_tiny = sluice.remote(tiny_facts)


@sluice.remote
class TinyActor:
    def where(self) -> dict:
        return tiny_facts()


def built_venvs(cache: str) -> dict[str, int]:
    """The virtualenvs built in a node's cache folder: path -> when it was marked ready."""
    return {str(p): (p / ".sluice-ready").stat().st_mtime_ns for p in Path(cache).iterdir()
            if p.name.startswith("venv-") and (p / ".sluice-ready").exists()}


def test_pip_builds_a_virtualenv_once_on_each_node_that_runs_it(cluster: LocalCluster,
                                                                tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)  # only on the driver's disk: it travels through the object store
    env = {"pip": [str(wheel)]}
    venv_of: dict[str, str] = {}
    for node in ("n0", "n1"):
        got = sluice.get(use_tiny.options(resources={node: 0.01}, runtime_env=env).remote(),
                         timeout=600)
        assert got["value"] == "tiny" and got["env_a"] == "job"
        assert got["venv"].startswith(got["cache"]) and got["cache"].endswith(node)
        assert got["file"].startswith(got["venv"]) and got["python"].startswith(got["venv"])
        assert got["cache"] in got["origin"] and str(tmp_path) not in got["origin"]  # shipped
        venv_of[got["cache"]] = got["venv"]
    assert len(venv_of) == 2  # one virtualenv on each node, in its own cache
    built = {cache: built_venvs(cache) for cache in venv_of}
    assert all(venv in built[cache] for cache, venv in venv_of.items())
    # more tasks, and an actor (another worker process), on each node: the same virtualenvs
    refs = [use_tiny.options(resources={node: 0.01}, runtime_env=env).remote()
            for node in ("n0", "n1") for _ in range(3)]
    actors = [TinyActor.options(resources={node: 0.01}, runtime_env=env).remote()
              for node in ("n0", "n1")]
    again = sluice.get(refs + [a.where.remote() for a in actors], timeout=600)
    assert {(g["cache"], g["venv"], g["value"]) for g in again} == \
        {(cache, venv, "tiny") for cache, venv in venv_of.items()}
    assert {cache: built_venvs(cache) for cache in venv_of} == built  # none rebuilt, none added
    for node in ("n0", "n1"):  # the plain pool of each node never sees the package
        with pytest.raises(ModuleNotFoundError):
            sluice.get(use_tiny.options(resources={node: 0.01}).remote(), timeout=120)


def test_a_requirement_that_cannot_install_fails_the_task_and_the_node_runs_on(
        cluster: LocalCluster, tmp_path: Path) -> None:
    missing = tmp_path / "sluice_missing_pkg-1.0-py3-none-any.whl"  # on no machine
    bad = use_tiny.options(resources={"n1": 0.01}, runtime_env={"pip": [str(missing)]})
    for _ in range(2):  # each try fails with pip's words, never hangs the node's workers
        with pytest.raises(RuntimeEnvSetupError,
                           match="(?s)pip install failed.*pip said:.*sluice_missing_pkg"):
            sluice.get(bad.remote(), timeout=600)
        got = sluice.get(env_of.options(resources={"n1": 0.01}).remote("SLUICE_T_A"), timeout=120)
        assert got["SLUICE_T_A"] == "job"
    actor = TinyActor.options(resources={"n1": 0.01}, runtime_env={"pip": [str(missing)]}).remote()
    with pytest.raises(RuntimeEnvSetupError, match="(?s)pip install failed.*sluice_missing_pkg"):
        sluice.get(actor.where.remote(), timeout=600)
    cache = sluice.get(env_of.options(resources={"n1": 0.01}).remote("SLUICE_RUNTIME_ENV_CACHE"),
                       timeout=120)["SLUICE_RUNTIME_ENV_CACHE"]
    half_built = [p for p in Path(cache).iterdir() if p.name.startswith("venv-")
                  and p.is_dir() and not (p / ".sluice-ready").exists()]
    assert half_built == []


def test_pip_names_a_wheel_of_the_working_dir_as_ray_does(cluster: LocalCluster, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    wheel = make_wheel(project, version="0.3")
    env = {"working_dir": str(project), "pip": [f"${{RAY_RUNTIME_ENV_CREATE_WORKING_DIR}}/{wheel.name}"]}
    got = sluice.get(use_tiny.options(resources={"n1": 0.01}, runtime_env=env).remote(), timeout=600)
    assert got["value"] == "tiny" and got["cache"] in got["origin"] and str(tmp_path) not in got["origin"]


def test_a_wheel_past_the_package_limit_is_read_by_each_nodes_pip_where_it_is(
        cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.executor import runtime_env as renv

    wheel = make_wheel(tmp_path, version="0.4")
    monkeypatch.setattr(renv, "MAX_PACKAGE_BYTES", 64)  # as a shared folder would hold a big one
    got = sluice.get(use_tiny.options(resources={"n0": 0.01}, runtime_env={"pip": [str(wheel)]})
                     .remote(), timeout=600)
    assert got["value"] == "tiny" and str(wheel) in got["origin"]


@sluice.remote
def numpy_file() -> str:
    import numpy

    return numpy.__file__ + " " + getattr(numpy, "VALUE", "")


def test_a_pinned_package_replaces_the_one_sluice_preloads(cluster: LocalCluster, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, name="numpy", version="99.0")  # another numpy than the node's
    got = sluice.get(numpy_file.options(resources={"n1": 0.01}, runtime_env={"pip": [str(wheel)]})
                     .remote(), timeout=600)
    assert "/venv-" in got and got.endswith(" tiny")  # the worker's numpy is the virtualenv's
    plain = sluice.get(numpy_file.options(resources={"n1": 0.01}).remote(), timeout=120)
    assert "/venv-" not in plain and not plain.endswith(" tiny")


@sluice.remote
def tiny_in_child() -> dict:
    return sluice.get(use_tiny.remote())  # inherits the job's pip


def test_a_job_environment_with_pip_reaches_every_task_and_its_children(
        cluster: LocalCluster, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, version="0.2")  # another wheel: another virtualenv
    sluice.shutdown()
    try:
        sluice.init(address=cluster.address, runtime_env={**JOB_ENV, "pip": [str(wheel)]})
        got = sluice.get([use_tiny.options(resources={node: 0.01}).remote() for node in ("n0", "n1")]
                         + [tiny_in_child.options(resources={"n0": 0.01}).remote()], timeout=600)
        assert {(g["value"], g["env_a"]) for g in got} == {("tiny", "job")}
        assert len({g["cache"] for g in got}) >= 2 and all(g["venv"].startswith(g["cache"]) for g in got)
        assert "sluice_tiny_pkg-0.2" in str(list(Path(got[0]["venv"]).rglob("*.dist-info")))
    finally:
        sluice.shutdown()
        sluice.init(address=cluster.address, runtime_env=JOB_ENV)
