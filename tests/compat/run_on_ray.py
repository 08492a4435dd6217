"""Run the compat programs on Ray itself: ``python -m tests.compat.run_on_ray [NAME ...]``.

Each program's imports go back to ``ray`` and it runs in a fresh interpreter (Ray must be
installed: ``make bench`` installs it). A program passes when its expected lines appear in
its stdout in order (Ray prints its own log lines there too). Not part of ``make test``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.compat.test_compat import PROGRAMS, expected_output


def as_ray_source(source: str) -> str:
    """The program as a Ray user has it: ``import ray`` and ``from ray... import``."""
    source = source.replace("import sluice as ray", "import ray")
    return re.sub(r"^from sluice", "from ray", source, flags=re.M)


def in_order(expected: list[str], lines: list[str]) -> bool:
    """Whether ``expected`` appears in ``lines`` in order (other lines between)."""
    it = iter(lines)
    return all(any(line == want for line in it) for want in expected)


def main(names: list[str]) -> int:
    failed = []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as workdir:
        for path in sorted(PROGRAMS.glob("*.py")):
            if names and path.stem not in names:
                continue
            script = Path(workdir) / path.name
            script.write_text(as_ray_source(path.read_text()))
            done = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=300)
            ok = done.returncode == 0 and in_order(
                expected_output(path.read_text()).splitlines(), done.stdout.splitlines())
            print(f"{path.stem}: {'ok' if ok else 'FAILED'}", flush=True)
            if not ok:
                failed.append(path.stem)
                print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
    print(f"{len(failed)} failed: {' '.join(failed)}" if failed else "all ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
