"""Every code block of README.md runs as written, in order, in one fresh interpreter.

The rules (also what a README author needs to know):

- ```` ```python ```` blocks run in one fresh interpreter, in order, sharing one ``__main__``
  (as a reader pasting them into one ``python`` session would). A block whose first line is
  ``# NAME.py`` is a file the reader saves: it is written to ``NAME.py`` and not run.
- ```` ```bash ```` and ```` ```sh ```` blocks run with ``bash -e`` at their place in that
  order, from the same interpreter (so a block may start a cluster that the next Python
  block uses). Blocks in another language, or none (diagrams), are text.
- A block whose first line is a comment starting ``# not run by the README test`` is skipped;
  the comment says why (it needs another machine, never returns, ...).
- A ``print(...)`` line whose comment starts with ``# ->`` states what it prints: the rest
  of the comment is the exact text, checked. A value in a comment on a line that prints
  nothing (``f(x)  # [4, 4]``) cannot be checked and is refused: print it and write ``# -> ...``.

All of it runs in a temporary folder holding the data the blocks read (``trips/``), with
its own ``TMPDIR`` (so the daemons a block starts are recorded there and ``sluice stop``
stops only them) and its own workflow storage; daemons left running are stopped at the end.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_MARK = "# not run by the README test"
CODE_LANGUAGES = {"python": "python", "bash": "shell", "sh": "shell"}


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README: its number (1-based, among all fenced blocks), the
    README line of its first code line, its language and text."""

    number: int
    line: int
    language: str
    code: str

    @property
    def kind(self) -> str:
        """``python``, ``shell``, ``file`` (a module the reader saves), ``skip`` or ``text``."""
        kind = CODE_LANGUAGES.get(self.language, "text")
        first = self.code.splitlines()[0].strip() if self.code.strip() else ""
        if kind != "text" and first.startswith(SKIP_MARK):
            return "skip"
        if kind == "python" and re.fullmatch(r"# [\w/]+\.py", first):
            return "file"
        return kind

    def describe(self) -> str:
        return f"README.md block {self.number} (line {self.line}, {self.language}):\n{self.code}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append(Block(len(blocks) + 1, i + 2, fence.group(1), "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return blocks


# The fresh interpreter's program: run the blocks (a JSON list) in order and record what each
# README line printed; on a failure, record the block and the traceback and stop.
RUNNER = r'''
import builtins, io, json, subprocess, sys, traceback, types

blocks, results = json.load(open(sys.argv[1])), sys.argv[2]
main = types.ModuleType("__main__")
main.__dict__["__builtins__"] = builtins
sys.modules["__main__"] = main
printed = {}
real_print = builtins.print

def recording_print(*args, **kwargs):
    frame = sys._getframe(1)
    if frame.f_code.co_filename == "README.md" and kwargs.get("file") is None:
        text = io.StringIO()
        real_print(*args, **{**kwargs, "file": text})
        printed.setdefault(frame.f_lineno, []).append(text.getvalue())
    real_print(*args, **kwargs)

builtins.print = recording_print
failed = None
for block in blocks:
    real_print(f"==== README.md block {block['number']} (line {block['line']})", flush=True)
    try:
        if block["kind"] == "file":
            with open(block["code"].splitlines()[0][2:].strip(), "w") as f:
                f.write(block["code"])
        elif block["kind"] == "python":
            exec(compile("\n" * (block["line"] - 1) + block["code"], "README.md", "exec"), main.__dict__)
        else:
            sys.stdout.flush()
            done = subprocess.run(["bash", "-e", "-c", block["code"]])
            if done.returncode:
                raise RuntimeError(f"the shell block exited with status {done.returncode}")
    except BaseException:
        failed = {"number": block["number"], "error": traceback.format_exc()}
        break
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
with open(results, "w") as f:
    json.dump({"printed": printed, "failed": failed}, f)
sys.exit(1 if failed else 0)
'''


def make_trips(folder: Path) -> None:
    """``trips/``: the Parquet files the sluice.data block reads (some trips of 0 km)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    for part in range(3):
        n = 1000
        pq.write_table(pa.table({
            "day": [f"2026-11-0{1 + part}"] * n,
            "zone": [f"z{i % 7}" for i in range(n)],
            "km": [float(i % 13) for i in range(n)],
            "fare": [2.5 + (i % 13) * 1.5 for i in range(n)],
            "driver": [f"d{i % 50}" for i in range(n)],
        }), folder / f"part-{part}.parquet")


def stated_outputs(block: Block) -> dict[int, tuple[int, int, str]]:
    """``# -> TEXT`` comments of a Python block: README line -> (first and last line of
    the print statement it closes, TEXT). Fails on a stated value that cannot be checked."""
    tree = ast.parse(block.code)
    prints = [(node.lineno + block.line - 1, node.end_lineno + block.line - 1) for node in ast.walk(tree)
              if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Name) and node.value.func.id == "print"]
    stated = {}
    for tok in tokenize.generate_tokens(io.StringIO(block.code).readline):
        if tok.type != tokenize.COMMENT:
            continue
        line = tok.start[0] + block.line - 1
        around = [p for p in prints if p[0] <= line <= p[1]]
        if tok.string.startswith("# ->"):
            assert around, (f"README.md line {line}: a `# ->` comment on a line that prints nothing; "
                            f"write print(...)  # -> OUTPUT\n{block.describe()}")
            stated[line] = (*around[0], tok.string[len("# ->"):].strip())
        elif re.match(r"#\s*[\[{'\"]", tok.string) and not around and tok.start[1] > 0:
            pytest.fail(f"README.md line {line}: the value in {tok.string!r} is not checked; "
                        f"print it and state it as `print(...)  # -> VALUE`\n{block.describe()}")
    return stated


def test_every_readme_block_runs_and_prints_what_it_says(tmp_path) -> None:
    blocks = readme_blocks(README.read_text())
    runnable = [b for b in blocks if b.kind in ("python", "shell", "file")]
    assert any(b.kind == "python" for b in runnable) and any(b.kind == "shell" for b in runnable)
    stated = {line: s for b in runnable if b.kind == "python" for line, s in stated_outputs(b).items()}
    assert stated, "the README states no output (`print(...)  # -> OUTPUT`)"

    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    make_trips(work / "trips")
    (tmp_path / "blocks.json").write_text(json.dumps(
        [{"number": b.number, "line": b.line, "kind": b.kind, "code": b.code} for b in runnable]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp),
           "SLUICE_WORKFLOW_STORAGE": str(tmp_path / "workflows"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("SLUICE_TOKEN", "SLUICE_TLS_ROOT"):  # the README's cluster has neither
        env.pop(name, None)
    results = tmp_path / "results.json"
    try:
        run = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json"), str(results)],
                             cwd=work, env=env, capture_output=True, text=True, timeout=600)
    finally:  # daemons a block started and a later block did not stop
        subprocess.run([sys.executable, "-m", "sluice.cli", "stop"], cwd=work, env=env,
                       capture_output=True, timeout=120)
    assert results.exists(), f"the README's interpreter died:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    outcome = json.loads(results.read_text())
    if outcome["failed"] is not None:
        [block] = [b for b in blocks if b.number == outcome["failed"]["number"]]
        pytest.fail(f"{block.describe()}\nfailed:\n{outcome['failed']['error']}\n"
                    f"output (last 3000 characters):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    printed = {int(line): texts for line, texts in outcome["printed"].items()}
    wrong = []
    for line, (first, last, expected) in sorted(stated.items()):
        got = [text for at in range(first, last + 1) for text in printed.get(at, [])]
        if got != [expected + "\n"]:
            wrong.append(f"README.md line {line}: states {expected!r}, printed {''.join(got)!r}")
    assert not wrong, "\n".join(wrong)


def test_the_block_rules_read_the_readme_as_intended() -> None:
    text = ("```sh\n# not run by the README test: it never returns\nsluice scheduler\n```\n"
            "```python\n# jobs.py\nX = 1\n```\n"
            "```\nsluice/dsl  a diagram\n```\n"
            "```python\nprint(1 + 1)  # -> 2\nf(3)          # [4, 4]\n```\n")
    skip, file, diagram, code = readme_blocks(text)
    assert (skip.kind, file.kind, diagram.kind, code.kind) == ("skip", "file", "text", "python")
    assert (code.number, code.line) == (4, 13)
    with pytest.raises(pytest.fail.Exception, match=r"line 14: the value in '# \[4, 4\]' is not checked"):
        stated_outputs(code)
    assert stated_outputs(Block(1, 10, "python", "x = 1\nprint(\n  x)  # -> 1\n")) == {12: (11, 12, "1")}
