"""``sluice.runtime_env.RuntimeEnv``: Ray's typed form of a ``runtime_env`` dict.

A plain ``dict`` works everywhere a ``RuntimeEnv`` does (see
:mod:`sluice.executor.runtime_env` for the keys and what each does).

>>> RuntimeEnv(env_vars={"A": "1"}, working_dir=".")
{'working_dir': '.', 'env_vars': {'A': '1'}}
"""

from __future__ import annotations

from typing import Any


class RuntimeEnv(dict):
    """A runtime environment: ``RuntimeEnv(env_vars=..., working_dir=..., py_modules=...,
    excludes=..., pip=...)`` is the dict of the keys given (None leaves a key out).
    Other keys are kept, and refused with ``RuntimeEnvSetupError`` where it is used."""

    def __init__(self, *, py_modules: list[str] | None = None, working_dir: str | None = None,
                 pip: list[str] | dict[str, Any] | None = None, env_vars: dict[str, str] | None = None,
                 excludes: list[str] | None = None, **kwargs: Any):
        super().__init__()
        given = {"py_modules": py_modules, "working_dir": working_dir, "pip": pip,
                 "env_vars": env_vars, "excludes": excludes, **kwargs}
        self.update({k: v for k, v in given.items() if v is not None})
