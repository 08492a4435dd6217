"""Workers: forked from the runtime's template, lean at start, and gone when their driver dies.

The killed-driver tests run a real driver process, SIGKILL it while a task runs,
and poll until the processes it started are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.executor import context
from sluice.executor.process import process_alive
from tests.executor.helpers import REPO_ROOT, wait_until

DEADLINE_S = 60.0


@pytest.fixture
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=1)
    yield
    sluice.shutdown()


@sluice.remote
def heavy_modules_loaded() -> list[str]:
    return [m for m in ("networkx", "sluice.compiler.plan", "sluice.compiler.ir", "pyarrow")
            if m in sys.modules]


@sluice.remote
def parent_pid() -> int:
    return os.getppid()


@sluice.remote
class Process:
    def parent_pid(self) -> int:
        return os.getppid()


@sluice.remote
def square(x: int) -> int:
    return x * x


def test_a_worker_imports_neither_the_compiler_nor_networkx(runtime) -> None:
    assert sluice.get(heavy_modules_loaded.remote()) == []


@sluice.remote
def plus_one(x: int) -> int:
    return x + 1


@sluice.remote
def networkx_loaded(_: int) -> bool:
    return "networkx" in sys.modules


def test_a_worker_running_a_plan_stage_does_not_load_networkx(runtime) -> None:
    # A stage's ops are plain data: running them needs neither networkx nor the passes.
    with sluice.InputNode() as inp:
        dag = networkx_loaded.bind(plus_one.bind(plus_one.bind(inp)))
    assert sluice.get(dag.execute(1)) is False


def test_workers_started_after_init_are_children_of_the_template(runtime) -> None:
    template = context.current().template
    assert template is not None and template.proc is not None
    assert sluice.get(parent_pid.remote()) == template.proc.pid
    actor = Process.remote()  # a process of its own, started now
    assert sluice.get(actor.parent_pid.remote()) == template.proc.pid


def test_a_killed_template_takes_its_workers_and_the_runtime_starts_new_ones(runtime) -> None:
    template = context.current().template
    worker_pids = [w.proc.pid for w in context.current().scheduler.workers]
    assert worker_pids
    os.kill(template.proc.pid, signal.SIGKILL)
    assert wait_until(lambda: not any(process_alive(p, None) for p in worker_pids), DEADLINE_S), \
        f"workers {worker_pids} outlived their template"
    assert sluice.get(square.remote(7)) == 49  # started directly now
    assert sluice.get(parent_pid.remote()) == os.getpid()


KILLED_DRIVER = textwrap.dedent("""
    import os, sys, time
    import sluice
    from sluice.executor import context

    LOG = sys.argv[1]

    def note(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    @sluice.remote
    def long_task():
        note(f"task {os.getpid()}")
        time.sleep(3600)

    @sluice.remote
    class Holder:
        def pid(self):
            return os.getpid()

    sluice.init(num_cpus=2)
    template = context.current().template
    note(f"template {template.proc.pid if template is not None else 0}")
    actor = Holder.remote()
    note(f"actor {sluice.get(actor.pid.remote())}")
    long_task.remote()
    time.sleep(3600)
""")


def pids_in(log: Path) -> dict[str, int]:
    lines = log.read_text().split("\n")[:-1] if log.exists() else []  # whole lines only
    return {name: int(pid) for name, pid in (line.split() for line in lines)}


@pytest.mark.parametrize("template", ["1", "0"], ids=["forked", "fresh-interpreters"])
def test_a_sigkilled_drivers_workers_stop(tmp_path, template) -> None:
    log = tmp_path / "log"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), SLUICE_WORKER_TEMPLATE=template)
    driver = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, str(log)], env=env, cwd=REPO_ROOT,
                              start_new_session=True)
    try:
        assert wait_until(lambda: "task" in pids_in(log) or driver.poll() is not None, DEADLINE_S)
        assert driver.poll() is None, f"the driver exited with {driver.returncode}"
        pids = pids_in(log)
        started = [pid for pid in pids.values() if pid]
        assert all(process_alive(pid, None) for pid in started)
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: nothing signals its workers
        driver.wait()

        def alive() -> list[int]:
            return [pid for pid in started if process_alive(pid, None)]

        assert wait_until(lambda: not alive(), DEADLINE_S), \
            f"still running after the driver's death: {alive()} of {pids}"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever is left, should the test fail
        except ProcessLookupError:
            pass
        driver.wait()


WORLD_AFTER_INIT = textwrap.dedent("""
    import os, sys
    import sluice

    def look():
        import made_after_init  # in the directory put on the driver's path after init

        print("printed by the task", flush=True)
        return os.environ.get("SET_AFTER_INIT"), os.getcwd(), made_after_init.VALUE

    sluice.init(num_cpus=1)
    out = open(sys.argv[1], "w")
    os.dup2(out.fileno(), 1)
    os.environ["SET_AFTER_INIT"] = "yes"
    os.chdir(sys.argv[2])
    sys.path.insert(0, sys.argv[2])

    @sluice.remote
    class Fresh:  # a process started now, after the changes above
        def look(self):
            return look()

    print(repr(sluice.get(Fresh.remote().look.remote())), file=sys.stderr)
    sluice.shutdown()
""")


def test_a_worker_started_after_init_sees_the_drivers_environment_directory_path_and_stdout(
        tmp_path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "made_after_init.py").write_text("VALUE = 42\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = subprocess.run([sys.executable, "-c", WORLD_AFTER_INIT, str(out), str(elsewhere)], env=env,
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=DEADLINE_S)
    assert child.returncode == 0, child.stderr
    assert child.stderr.strip().splitlines()[-1] == repr(("yes", str(elsewhere), 42))
    assert "printed by the task" in out.read_text()


@sluice.remote
def divide(x: int) -> float:
    return 1 / x


@pytest.mark.parametrize("template", ["1", "0"])
def test_a_remote_traceback_starts_at_the_users_code(template, monkeypatch) -> None:
    # A worker forked from the template and one run as ``python -m`` (``__main__``) alike
    # show the user's frames only: no frame of sluice's executor above them.
    monkeypatch.setenv("SLUICE_WORKER_TEMPLATE", template)
    sluice.init(num_cpus=1)
    try:
        with pytest.raises(sluice.exceptions.TaskError) as info:
            sluice.get(divide.remote(0))
    finally:
        sluice.shutdown()
    remote = str(info.value).split("Traceback (most recent call last):", 1)[1]
    assert "sluice/executor" not in remote and "in divide" in remote
