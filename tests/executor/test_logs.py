"""Worker output: each worker's stdout and stderr in its own files, shown at the driver as
it is written (prefixed like Ray's ``(square pid=1234)``, repeats across processes shown
once), ``log_to_driver=False``, and reading the files back (get_log, list_logs, ``sluice
logs``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice.executor import context, logs
from sluice.util.state import get_log, list_actors, list_logs, list_tasks
from tests.polling import until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


@sluice.remote
def chatty(path: str) -> int:
    print("chatty starts")
    print("chatty complains", file=sys.stderr)
    while not os.path.exists(path):
        time.sleep(0.01)
    print("chatty ends")
    return os.getpid()


@sluice.remote
class Speaker:
    def say(self, text):
        print(text)
        return os.getpid()


def test_a_tasks_output_reaches_the_driver_while_it_runs_prefixed_with_its_name(
        capsys, tmp_path: Path) -> None:
    go = tmp_path / "go"
    ref = chatty.remote(str(go))
    seen = {"out": "", "err": ""}

    def printed(text: str, stream: str) -> bool:
        captured = capsys.readouterr()
        seen["out"] += captured.out
        seen["err"] += captured.err
        return text in seen[stream]

    until(lambda: printed(") chatty starts", "out"))   # before the task ends
    until(lambda: printed(") chatty complains", "err"))
    # (the task waits for ``go``, made only below: those lines came while it ran)
    go.touch()
    pid = sluice.get(ref)
    until(lambda: printed(f"(chatty pid={pid}) chatty ends", "out"))
    assert f"(chatty pid={pid}) chatty starts" in seen["out"]
    assert f"(chatty pid={pid}) chatty complains" in seen["err"]
    assert "chatty complains" not in seen["out"]


def test_an_actors_output_is_prefixed_with_its_class(capsys) -> None:
    speaker = Speaker.remote()
    pid = sluice.get(speaker.say.remote("the actor speaks"))
    until(lambda: f"(Speaker pid={pid}) the actor speaks" in capsys.readouterr().out)
    sluice.kill(speaker)


def test_the_files_keep_every_line_and_are_read_back(tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    pid = sluice.get(chatty.remote(str(go)))
    files = list_logs()
    assert any(name.endswith(f"-{pid}.out") for name in files["worker_out"])
    assert any(name.endswith(f"-{pid}.err") for name in files["worker_err"])
    assert list_logs(glob_filter=f"*-{pid}.err") == {"worker_out": [],
                                                     "worker_err": [f for f in files["worker_err"]
                                                                    if f.endswith(f"-{pid}.err")]}
    out = list(get_log(pid=pid))
    assert "chatty starts" in out and "chatty ends" in out   # markers are left out
    assert not any(logs.MARK in line for line in out)
    assert list(get_log(pid=pid, suffix="err"))[-1] == "chatty complains"
    assert list(get_log(pid=pid, tail=1)) == ["chatty ends"]
    (task,) = [t for t in list_tasks(filters=[("name", "=", "chatty")], limit=1000)
               if t.worker_pid == pid][-1:]
    assert "chatty ends" in list(get_log(task_id=task.task_id))
    speaker = Speaker.remote()
    actor_pid = sluice.get(speaker.say.remote("kept in the file"))
    (actor,) = [a for a in list_actors() if a.pid == actor_pid]
    until(lambda: "kept in the file" in list(get_log(actor_id=actor.actor_id)))
    sluice.kill(speaker)


def test_bad_log_requests_are_named() -> None:
    with pytest.raises(ValueError, match="exactly one of filename, pid, actor_id, task_id"):
        list(get_log())
    with pytest.raises(ValueError, match="'passwd' is not a worker log file"):
        list(get_log(filename="passwd"))
    with pytest.raises(ValueError, match="no worker log of process 1"):
        list(get_log(pid=1))
    with pytest.raises(ValueError, match="suffix='txt'"):
        list(get_log(pid=1, suffix="txt"))


@sluice.remote
def bad_log_request() -> str:
    try:
        list(get_log(filename="../../etc/passwd"))
    except ValueError as err:
        return str(err)
    return "no error"


def test_a_task_can_read_logs_and_bad_input_comes_back_as_an_error() -> None:
    assert "is not a worker log file" in sluice.get(bad_log_request.remote())


def test_repeats_from_other_processes_are_shown_once_with_their_count() -> None:
    now = [0.0]
    out = io.StringIO()
    printer = logs.ConsolePrinter(out=out, err=out, dedup=True, window_s=5.0,
                                  clock=lambda: now[0])
    printer([logs.LogLine(10, "f", "out", "loading shard 1"),
             logs.LogLine(11, "f", "out", "loading shard 2"),     # alike: held
             logs.LogLine(12, "f", "out", "loading shard 3"),     # alike: held
             logs.LogLine(10, "f", "out", "loading shard 4"),     # the first process: shown
             logs.LogLine(11, "g", "out", "something else")])
    assert out.getvalue().splitlines() == ["(f pid=10) loading shard 1",
                                           "(f pid=10) loading shard 4",
                                           "(g pid=11) something else"]
    now[0] = 6.0
    printer.flush_expired()
    assert out.getvalue().splitlines()[-1] == \
        "(f pid=12) loading shard 3 [repeated 2x across cluster]"
    quiet = io.StringIO()
    plain = logs.ConsolePrinter(out=quiet, err=quiet, dedup=False)
    plain([logs.LogLine(1, "f", "out", "same"), logs.LogLine(2, "f", "out", "same",
                                                             node="10.0.0.7")])
    assert quiet.getvalue().splitlines() == ["(f pid=1) same", "(f pid=2, ip=10.0.0.7) same"]


DRIVER = """
import sluice, sys
sluice.init(num_cpus=1{options})

@sluice.remote
def shout():
    import os
    print("task says hello", flush=True)
    print("task warns", file=sys.stderr, flush=True)
    return os.getpid()

pid = sluice.get(shout.remote())
print("session", sluice.executor.context.current().session, "pid", pid, flush=True)
"""


def run_driver(options: str = "", tmp: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"TMPDIR": str(tmp)} if tmp else {})}
    out = subprocess.run([sys.executable, "-c", DRIVER.format(options=options)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_log_to_driver_false_keeps_the_output_in_the_files_only(tmp_path: Path) -> None:
    shown = run_driver()
    words = shown.stdout.split()
    pid = words[words.index("pid") + 1]
    assert f"(shout pid={pid}) task says hello" in shown.stdout
    assert f"(shout pid={pid}) task warns" in shown.stderr
    hidden = run_driver(", log_to_driver=False", tmp_path)   # its own temp folder
    assert "task says hello" not in hidden.stdout + hidden.stderr
    words = hidden.stdout.split()
    session, pid = words[words.index("session") + 1], words[words.index("pid") + 1]
    folder = tmp_path / f"sluice-{os.getuid()}" / "logs" / f"session_{session}"
    assert "task says hello" in logs.read_log(folder, f"worker-1-{pid}.out")
    assert "task warns" in logs.read_log(folder, f"worker-1-{pid}.err")
    # `sluice logs` with no dashboard reads the newest session's folder on this machine
    listing = subprocess.run([sys.executable, "-m", "sluice.cli", "logs", "--pid", pid],
                             capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path),
                                  "SLUICE_DASHBOARD_ADDRESS": "127.0.0.1:9"})
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines() == ["task says hello"]
    assert context.current() is not None  # (this module's own runtime is untouched)
