"""Tests of the sluice.store package: its public names and its place at the bottom layer."""

from __future__ import annotations

import ast
from pathlib import Path

import sluice.store

STORE_DIR = Path(sluice.store.__file__).parent


def test_every_public_name_is_defined() -> None:
    for name in sluice.store.__all__:
        assert hasattr(sluice.store, name), name


def test_the_store_imports_nothing_of_sluice_but_exceptions() -> None:
    # The store is the bottom layer: it knows nothing of tasks, graphs or the executor.
    for path in STORE_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.split(".")[0] == "sluice":
                    allowed = module == "sluice.exceptions" or module.startswith("sluice.store")
                    assert allowed, f"{path.name} imports {module}"
