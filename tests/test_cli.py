"""Tests of the ``sluice`` command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sluice import __version__, cli


def test_version(capsys) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_cleanup_removes_segments_of_dead_drivers(capsys) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = f"/dev/shm/sluice-{dead.stdout.strip()}-deadbeef-1"
    with open(path, "wb") as f:
        f.write(b"left behind")
    assert cli.main(["cleanup"]) == 0
    assert "removed" in capsys.readouterr().out
    assert not os.path.exists(path)


# --------------------------------------------------------------------------- sluice plan

EXAMPLE = "tests.compiler.dag_example"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_plan(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plan_explains_a_dag_by_default(capsys) -> None:
    code, out, err = run_plan(capsys, f"{EXAMPLE}:dag")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "== Physical Plan (optimized) =="
    assert any("[CALL combine+scale+shift]" in line and line.startswith("*(") for line in lines)
    assert any("[METHOD Tally.add]" in line for line in lines)
    assert "Not fused:" in lines


def test_plan_calls_a_function_that_returns_the_dag(capsys) -> None:
    assert run_plan(capsys, f"{EXAMPLE}:make_dag") == run_plan(capsys, f"{EXAMPLE}:dag")


def test_plan_without_optimization_has_a_stage_per_op(capsys) -> None:
    code, out, _ = run_plan(capsys, f"{EXAMPLE}:dag", "--no-optimize", "--verbose")
    assert code == 0
    assert out.splitlines()[0] == "== Physical Plan (not optimized) =="
    assert not any(line.startswith("*(") for line in out.splitlines())
    assert any(line.startswith("      scale-") for line in out.splitlines())   # --verbose


def test_plan_renders_to_the_given_path_and_prints_it(capsys, tmp_path) -> None:
    target = tmp_path / "plan.svg"
    code, out, _ = run_plan(capsys, f"{EXAMPLE}:dag", "-o", str(target))
    assert (code, out) == (0, f"{target}\n")
    svg = target.read_text()
    assert svg.startswith("<?xml") and "physical plan (optimized): 7 stages" in svg


def test_plan_draws_the_logical_graph_and_explains_too(capsys, tmp_path) -> None:
    target = tmp_path / "logical.svg"
    code, out, _ = run_plan(capsys, f"{EXAMPLE}:dag", "-o", str(target), "--logical",
                            "--explain")
    assert code == 0
    assert out.startswith("== Physical Plan (optimized) ==") and out.endswith(f"{target}\n")
    assert "logical plan: 9 ops" in target.read_text()


def test_plan_takes_a_plan_from_a_module_in_the_current_directory(capsys, tmp_path,
                                                                  monkeypatch) -> None:
    (tmp_path / "cli_plan_target.py").write_text(
        f"from {EXAMPLE} import dag\nplan = dag.compile(optimize=False)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cli_plan_target", raising=False)
    code, out, _ = run_plan(capsys, "cli_plan_target:plan")
    assert code == 0 and "(not optimized)" in out.splitlines()[0]


def test_the_console_entry_point_runs_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "sluice.cli", "plan", f"{EXAMPLE}:make_dag"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "[CALL combine+scale+shift]" in done.stdout


BAD_TARGETS = [
    (["dag_example"],
     "target 'dag_example' is not MODULE:ATTR; name a module and an attribute in it, e.g. "
     "mypipelines:dag"),
    (["no_such_module_9f:dag"],
     "target 'no_such_module_9f:dag': no module named 'no_such_module_9f'; run from the"),
    ([f"{EXAMPLE}:nope"],
     f"target '{EXAMPLE}:nope': module '{EXAMPLE}' has no attribute 'nope'; its public names are"),
    ([f"{EXAMPLE}:scale"],
     f"{EXAMPLE}:scale is the remote function scale (bind it: scale.bind(...)), not a DAG"),
    ([f"{EXAMPLE}:Tally"],
     f"{EXAMPLE}:Tally is the actor class Tally (bind it: Tally.bind(...))"),
    ([f"{EXAMPLE}:__name__"], f"{EXAMPLE}:__name__ is str '{EXAMPLE}', not a DAG"),
    ([f"{EXAMPLE}:InputNode"], f"{EXAMPLE}:InputNode is type"),
    (["tests.test_cli:run_plan"],
     "tests.test_cli:run_plan is a function that needs arguments (capsys, *args: 'str')"),
    ([f"{EXAMPLE}:dag", "--logical"], "--logical chooses what -o draws; add -o PATH"),
    ([f"{EXAMPLE}:dag", "-o", "plan.gif"],
     "cannot render a plan to 'plan.gif': unknown suffix '.gif'; use a path ending in .svg"),
]


@pytest.mark.parametrize("args, message", BAD_TARGETS)
def test_plan_errors_name_the_value_and_exit_2(capsys, args, message) -> None:
    code, out, err = run_plan(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("sluice plan: error: ")
    assert message in err
