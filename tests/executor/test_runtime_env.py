"""Runtime environments (``runtime_env=``) on the local runtime: env_vars, working_dir,
excludes, py_modules, the job's default merged under each task's, workers pooled per
environment, and bad environments failing their task with RuntimeEnvSetupError."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.exceptions import RuntimeEnvSetupError, UnsupportedOnBackendError
from sluice.executor import env_files
from sluice.executor import runtime_env as renv
from sluice.executor.dask_backend import no_runtime_env


@pytest.fixture
def two_cpus() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
def env_of(*names: str) -> dict:
    return {"pid": os.getpid(), "cwd": os.getcwd(), **{n: os.environ.get(n) for n in names}}


@sluice.remote
class EnvActor:
    def read(self, name: str) -> str | None:
        return os.environ.get(name)


def test_env_vars_are_seen_by_tasks_and_actors(two_cpus: None) -> None:
    opts = {"env_vars": {"SLUICE_T_A": "a", "SLUICE_T_B": "b"}}
    got = sluice.get(env_of.options(runtime_env=opts).remote("SLUICE_T_A", "SLUICE_T_B"))
    assert (got["SLUICE_T_A"], got["SLUICE_T_B"]) == ("a", "b")

    @sluice.remote(runtime_env={"env_vars": {"SLUICE_T_A": "decorated"}})
    def decorated() -> str | None:
        return os.environ.get("SLUICE_T_A")

    assert sluice.get(decorated.remote()) == "decorated"
    actor = EnvActor.options(runtime_env={"env_vars": {"SLUICE_T_A": "actor"}}).remote()
    assert sluice.get(actor.read.remote("SLUICE_T_A")) == "actor"
    assert sluice.get(EnvActor.remote().read.remote("SLUICE_T_A")) is None


def test_tasks_without_an_environment_keep_the_plain_pool(two_cpus: None) -> None:
    with_env = env_of.options(runtime_env={"env_vars": {"SLUICE_T_A": "x"}})
    env_pids = {r["pid"] for r in sluice.get([with_env.remote("SLUICE_T_A") for _ in range(20)])
                if r["SLUICE_T_A"] == "x"}
    assert len(env_pids) >= 1
    plain = sluice.get([env_of.remote("SLUICE_T_A") for _ in range(50)])
    assert all(r["SLUICE_T_A"] is None for r in plain)  # never a worker of the environment
    assert not env_pids & {r["pid"] for r in plain}
    # and the environment's tasks, interleaved with plain ones, still see theirs
    mixed = sluice.get([(with_env if i % 2 else env_of).remote("SLUICE_T_A") for i in range(40)])
    assert [r["SLUICE_T_A"] for r in mixed] == [("x" if i % 2 else None) for i in range(40)]
    other = env_of.options(runtime_env={"env_vars": {"SLUICE_T_A": "y"}})
    assert {r["SLUICE_T_A"] for r in sluice.get([other.remote("SLUICE_T_A") for _ in range(10)])} == {"y"}


def test_job_environment_is_the_default_and_merges_env_vars() -> None:
    sluice.init(num_cpus=2, runtime_env={"env_vars": {"SLUICE_T_A": "job", "SLUICE_T_B": "job"}})
    try:
        assert sluice.get(env_of.remote("SLUICE_T_A", "SLUICE_T_B")) | {"pid": 0, "cwd": ""} == \
            {"pid": 0, "cwd": "", "SLUICE_T_A": "job", "SLUICE_T_B": "job"}
        task_env = {"env_vars": {"SLUICE_T_B": "task"}}
        got = sluice.get(env_of.options(runtime_env=task_env).remote("SLUICE_T_A", "SLUICE_T_B"))
        assert (got["SLUICE_T_A"], got["SLUICE_T_B"]) == ("job", "task")
        assert sluice.get(EnvActor.remote().read.remote("SLUICE_T_A")) == "job"
    finally:
        sluice.shutdown()


def test_a_bad_job_environment_fails_init() -> None:
    with pytest.raises(RuntimeEnvSetupError, match="'nope'"):
        sluice.init(num_cpus=1, runtime_env={"nope": 1})
    assert not sluice.is_initialized()


def make_project(root: Path) -> Path:
    project = root / "project"
    (project / "data").mkdir(parents=True)
    (project / "only_here_mod.py").write_text("VALUE = 'from the working dir'\n")
    (project / "data" / "greeting.txt").write_text("hello")
    (project / "run.log").write_text("noise")
    (project / "build").mkdir()
    (project / "build" / "artifact.bin").write_bytes(b"x" * 10)
    return project


@sluice.remote
def use_working_dir() -> dict:
    import only_here_mod

    with open("data/greeting.txt") as f:
        greeting = f.read()
    return {"value": only_here_mod.VALUE, "greeting": greeting, "cwd": os.getcwd(),
            "first_path": __import__("sys").path[0],
            "log": os.path.exists("run.log"), "build": os.path.exists("build")}


def test_working_dir_imports_its_modules_and_reads_files_relative_to_it(
        two_cpus: None, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    got = sluice.get(use_working_dir.options(runtime_env={"working_dir": str(project)}).remote())
    assert (got["value"], got["greeting"]) == ("from the working dir", "hello")
    assert got["cwd"] == got["first_path"]  # the unpacked copy: current directory, first on sys.path
    assert got["cwd"].startswith(env_files.cache_root()) and Path(got["cwd"], "only_here_mod.py").exists()
    assert got["log"] and got["build"]  # nothing excluded
    with pytest.raises(ModuleNotFoundError):
        sluice.get(use_working_dir.remote())  # the plain pool never sees it


def test_excludes_leave_files_out(two_cpus: None, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    env = {"working_dir": str(project), "excludes": ["*.log", "build/"]}
    got = sluice.get(use_working_dir.options(runtime_env=env).remote())
    assert got["greeting"] == "hello" and not got["log"] and not got["build"]


def test_working_dir_is_packed_by_content(two_cpus: None, tmp_path: Path) -> None:
    a, b = make_project(tmp_path / "a"), make_project(tmp_path / "b")
    cwd_a = sluice.get(use_working_dir.options(runtime_env={"working_dir": str(a)}).remote())["cwd"]
    cwd_b = sluice.get(use_working_dir.options(runtime_env={"working_dir": str(b)}).remote())["cwd"]
    assert cwd_a == cwd_b  # same files: one package, unpacked once
    (b / "data" / "greeting.txt").write_text("changed")
    c = tmp_path / "c"
    os.rename(b, c)
    got = sluice.get(use_working_dir.options(runtime_env={"working_dir": str(c)}).remote())
    assert got["greeting"] == "changed" and got["cwd"] != cwd_a


def test_py_modules_directories_and_files(two_cpus: None, tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "my_rt_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("NAME = 'pkg'\n")
    single = tmp_path / "my_rt_single.py"
    single.write_text("def twice(x):\n    return 2 * x\n")

    @sluice.remote(runtime_env={"py_modules": [str(pkg), str(single)]})
    def use_modules() -> tuple:
        import my_rt_pkg
        import my_rt_single

        return my_rt_pkg.NAME, my_rt_single.twice(21)

    assert sluice.get(use_modules.remote()) == ("pkg", 42)


@pytest.mark.parametrize("env, cause", [
    ({"conda": "x"}, "'conda' that sluice does not support"),
    ({"working_dir": "/no/such/dir"}, "/no/such/dir is not a directory"),
    ({"py_modules": ["/no/such/mod"]}, "neither a directory"),
    ({"env_vars": {"N": 4}}, "must be a dict of str to str"),
    ({"pip": "requests"}, "must be a list of requirement strings"),
    ("not a dict", "must be a dict"),
])
def test_bad_environments_fail_the_task_at_get(two_cpus: None, env: object, cause: str) -> None:
    ref = env_of.options(runtime_env=env).remote()
    with pytest.raises(RuntimeEnvSetupError, match=cause):
        sluice.get(ref, timeout=60)
    actor = EnvActor.options(runtime_env=env).remote()
    with pytest.raises(RuntimeEnvSetupError, match=cause):
        sluice.get(actor.read.remote("X"), timeout=60)
    assert sluice.get(env_of.remote(), timeout=60)["pid"] > 0  # the pool still runs


def test_a_package_past_the_limit_fails(two_cpus: None, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path)
    (project / "big.bin").write_bytes(b"x" * 4096)
    monkeypatch.setattr(env_files, "MAX_PACKAGE_BYTES", 1024)
    with pytest.raises(RuntimeEnvSetupError, match="more than 0 MiB of files.*excludes"):
        sluice.get(use_working_dir.options(runtime_env={"working_dir": str(project)}).remote())
    env = {"working_dir": str(project), "excludes": ["big.bin"]}
    assert sluice.get(use_working_dir.options(runtime_env=env).remote())["greeting"] == "hello"


def test_nested_tasks_take_their_own_environment(two_cpus: None) -> None:
    @sluice.remote
    def outer() -> str | None:
        inner = env_of.options(runtime_env={"env_vars": {"SLUICE_T_A": "nested"}})
        return sluice.get(inner.remote("SLUICE_T_A"))["SLUICE_T_A"]

    assert sluice.get(outer.remote()) == "nested"
    # A parent waiting in its get may run the child in its own process (when the child
    # waits in the queue): never one of another environment.
    for _ in range(10):
        assert sluice.get([outer.remote(), outer.remote()]) == ["nested", "nested"]


def test_children_inherit_their_parents_environment(two_cpus: None, tmp_path: Path) -> None:
    project = make_project(tmp_path)

    @sluice.remote
    def parent() -> tuple:
        plain = sluice.get(env_of.remote("SLUICE_T_A", "SLUICE_T_B"))
        merged = sluice.get(env_of.options(runtime_env={"env_vars": {"SLUICE_T_B": "child"}})
                            .remote("SLUICE_T_A", "SLUICE_T_B"))
        return (plain["SLUICE_T_A"], plain["cwd"] == os.getcwd(), merged["SLUICE_T_A"],
                merged["SLUICE_T_B"], sluice.get(use_working_dir.remote())["value"])

    env = {"env_vars": {"SLUICE_T_A": "parent"}, "working_dir": str(project)}
    assert sluice.get(parent.options(runtime_env=env).remote()) == \
        ("parent", True, "parent", "child", "from the working dir")

    @sluice.remote
    class Spawner:
        def child_sees(self) -> str | None:
            return sluice.get(env_of.remote("SLUICE_T_A"))["SLUICE_T_A"]

    spawner = Spawner.options(runtime_env={"env_vars": {"SLUICE_T_A": "actor"}}).remote()
    assert sluice.get(spawner.child_sees.remote()) == "actor"
    assert sluice.get(env_of.remote("SLUICE_T_A"))["SLUICE_T_A"] is None


def test_gitignore_style_excludes() -> None:
    cases = {("a/b/x.log", False): True, ("x.log", False): True, ("build", True): True,
             ("build", False): False, ("src/build", True): True, ("data/raw/1.csv", False): True,
             ("raw/1.csv", False): False, ("keep.py", False): False}
    patterns = ["*.log", "build/", "data/**/*.csv"]
    assert {k: env_files.excluded(*k, patterns) for k in cases} == cases


def test_merge_lets_the_task_override_and_merges_env_vars() -> None:
    job = {"env_vars": {"A": "1", "B": "1"}, "working_dir": "/job", "excludes": ["*.log"]}
    task = {"env_vars": {"B": "2"}, "working_dir": "/task"}
    assert renv.merge(job, task) == {"env_vars": {"A": "1", "B": "2"}, "working_dir": "/task",
                                     "excludes": ["*.log"]}
    assert renv.merge(None, task) == task and renv.merge(job, None) == job


def test_dask_backend_refuses_runtime_env() -> None:
    with pytest.raises(UnsupportedOnBackendError, match="dask backend"):
        no_runtime_env({"env_vars": {"A": "1"}}, "task f")
    no_runtime_env(None, "task f")


def make_wheel(folder: Path, name: str = "sluice_tiny_pkg", version: str = "0.1") -> Path:
    """A pure-Python wheel of one module, written by hand (no build backend needed)."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 'tiny'\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


@sluice.remote
def use_tiny() -> tuple:
    import sys

    import sluice_tiny_pkg

    return sluice_tiny_pkg.VALUE, sys.executable, os.getpid()


def test_pip_installs_into_a_virtualenv_built_once(two_cpus: None, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    env = {"pip": [str(wheel)], "env_vars": {"SLUICE_T_A": "pip"}}
    value, python, _ = sluice.get(use_tiny.options(runtime_env=env).remote(), timeout=600)
    assert value == "tiny" and python.startswith(env_files.cache_root())
    venv = Path(python).parents[1]
    built = (venv / ".sluice-ready").stat().st_mtime_ns
    again = sluice.get([use_tiny.options(runtime_env={"pip": [str(wheel)]}).remote()
                        for _ in range(4)], timeout=600)
    assert {(v, p) for v, p, _ in again} == {("tiny", python)}  # the same venv, not rebuilt
    assert (venv / ".sluice-ready").stat().st_mtime_ns == built
    with pytest.raises(ModuleNotFoundError):
        sluice.get(use_tiny.remote())  # the plain pool does not have it
    assert sluice.get(env_of.remote("SLUICE_T_A"))["SLUICE_T_A"] is None


def test_a_requirement_that_cannot_install_fails_with_pips_words(two_cpus: None, tmp_path: Path) -> None:
    missing = tmp_path / "sluice_missing_pkg-1.0-py3-none-any.whl"
    ref = use_tiny.options(runtime_env={"pip": [str(missing)]}).remote()
    with pytest.raises(RuntimeEnvSetupError, match="(?s)pip install failed.*pip said:.*sluice_missing_pkg"):
        sluice.get(ref, timeout=600)
    assert not any(p.name.startswith("venv-") and not p.name.endswith(".lock")
                   and not (p / ".sluice-ready").exists() for p in Path(env_files.cache_root()).iterdir())
    assert sluice.get(env_of.remote(), timeout=60)["pid"] > 0


def test_pip_names_a_wheel_of_the_working_dir_as_ray_does(two_cpus: None, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    wheel = make_wheel(project, version="0.3")
    env = {"working_dir": str(project), "pip": [f"${{RAY_RUNTIME_ENV_CREATE_WORKING_DIR}}/{wheel.name}"]}
    value, python, _ = sluice.get(use_tiny.options(runtime_env=env).remote(), timeout=600)
    assert value == "tiny" and python.startswith(env_files.cache_root())
    with pytest.raises(RuntimeEnvSetupError,
                       match="names .*RAY_RUNTIME_ENV_CREATE_WORKING_DIR.*give working_dir"):
        sluice.get(use_tiny.options(runtime_env={"pip": env["pip"]}).remote(), timeout=60)


def test_ray_style_runtime_env_object(two_cpus: None, tmp_path: Path) -> None:
    from sluice.runtime_env import RuntimeEnv

    env = RuntimeEnv(env_vars={"SLUICE_T_A": "typed"}, working_dir=str(make_project(tmp_path)))
    got = sluice.get(use_working_dir.options(runtime_env=env).remote())
    assert got["greeting"] == "hello"
    assert sluice.get(env_of.options(runtime_env=env).remote("SLUICE_T_A"))["SLUICE_T_A"] == "typed"


def test_a_bound_node_with_its_own_environment_is_refused_and_plans_run_in_the_jobs() -> None:
    sluice.init(num_cpus=1, runtime_env={"env_vars": {"SLUICE_T_A": "job"}})
    try:
        with pytest.raises(ValueError, match="runtime_env on a .bind\\(\\) node.*sluice.init"):
            env_of.options(runtime_env={"env_vars": {"SLUICE_T_A": "x"}}).bind("SLUICE_T_A").compile()
        assert sluice.get(env_of.bind("SLUICE_T_A").compile().execute())["SLUICE_T_A"] == "job"
    finally:
        sluice.shutdown()
