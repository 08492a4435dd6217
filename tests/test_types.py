"""mypy runs clean over the packages ``[tool.mypy] files`` in pyproject.toml names.

That list is the one place to extend: a package added there is checked here, so ``make test``
fails on its first type error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_mypy(tmp_path: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    """``python -m mypy`` with the repository's config, from its root, with a fresh cache."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy-cache"), *paths],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def test_the_checked_packages_are_type_clean(tmp_path: Path) -> None:
    result = run_mypy(tmp_path)
    assert result.returncode == 0, (
        f"mypy found type errors (fix them; see [tool.mypy] in pyproject.toml):\n"
        f"{result.stdout}{result.stderr}")
    assert "Success: no issues found" in result.stdout


def test_the_config_reports_a_type_error(tmp_path: Path) -> None:
    # The clean run above means something only while the same config still catches errors.
    bad = tmp_path / "bad.py"
    bad.write_text("def half(n: int) -> int:\n    return n / 2\n\n\ndef unannotated(x):\n"
                   "    return x\n")
    result = run_mypy(tmp_path, str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Incompatible return value type (got "float", expected "int")' in result.stdout
    assert "Function is missing a type annotation" in result.stdout
