"""The arguments of Ray's ``ray.init`` that ``sluice.init`` takes beyond its own.

Each does here what it does in Ray where sluice can, and says so where it cannot
(see :func:`sluice.init`):

- ``address="auto"``: the cluster ``SLUICE_ADDRESS``, else ``RAY_ADDRESS``, names, else
  the newest head ``sluice start --head`` runs on this machine (its daemon record);
  ``ConnectionError`` naming the remedies when there is none.
- ``log_to_driver=False``: the workers' stdout and stderr are not shown at the driver
  (they still go to the session's log files: :mod:`sluice.executor.logs`).
- ``configure_logging`` / ``logging_level``: the level of the ``sluice`` logger.
- ``include_dashboard=True``: the web dashboard (:mod:`sluice.dashboard`) on
  ``dashboard_host:dashboard_port`` (127.0.0.1:8265, as Ray's; port 0: any free one). Ray
  starts it by default; sluice only when asked (it costs the driver a web server thread).
- ``_system_config``: ``object_spilling_config`` of type ``filesystem`` sets the spill
  directory; other keys (Ray's internal tuning) are ignored with a warning naming them.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any

RAY_DEFAULT_DASHBOARD_HOST = "127.0.0.1"

JOB_ADDRESS_VAR = "SLUICE_JOB_ADDRESS"
"""Set for a submitted job's driver: the cluster its ``init()`` joins."""
JOB_RUNTIME_ENV_VAR = "SLUICE_JOB_RUNTIME_ENV"
"""Set for a submitted job's driver: its runtime_env (JSON), the default of its ``init()``."""


def auto_address() -> str:
    """The cluster ``init(address="auto")`` connects to, as ``sluice://HOST:PORT``."""
    for var in ("SLUICE_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var, "").strip()
        if value and value != "auto":
            return value if "://" in value else f"sluice://{value}"
    from sluice.executor.cluster import auth

    heads = [(path, rec) for path, rec in auth.daemon_records()
             if rec.get("kind") == "head" and rec.get("address")]
    if not heads:
        raise ConnectionError(
            "init(address='auto') found no sluice cluster: no head started with `sluice start "
            "--head` runs on this machine, and neither SLUICE_ADDRESS nor RAY_ADDRESS is set; "
            "start one, set SLUICE_ADDRESS=HOST:PORT, or call init() without an address for a "
            "local runtime")
    _, newest = max(heads, key=lambda item: item[0].stat().st_mtime)
    return f"sluice://{newest['address']}"


def check(log_to_driver: Any, include_dashboard: Any, dashboard_host: Any, dashboard_port: Any,
          configure_logging: Any, logging_level: Any, system_config: Any) -> str | None:
    """Check Ray's extra ``init`` arguments before the runtime starts (raising names the bad
    one), warn about those sluice cannot honour, and return the spill directory
    ``_system_config`` names (None: none)."""
    for name, value in (("log_to_driver", log_to_driver), ("configure_logging", configure_logging)):
        if not isinstance(value, bool):
            raise TypeError(f"init({name}={value!r}): give True or False")
    if include_dashboard not in (None, True, False):
        raise TypeError(f"init(include_dashboard={include_dashboard!r}): give True, False or None")
    if dashboard_port is not None and (isinstance(dashboard_port, bool)
                                       or not isinstance(dashboard_port, int)):
        raise TypeError(f"init(dashboard_port={dashboard_port!r}): give a port number or None")
    if isinstance(logging_level, bool) or not isinstance(logging_level, (int, str)):
        raise TypeError(f"init(logging_level={logging_level!r}): give a logging level such as "
                        "logging.INFO or 'INFO'")
    if isinstance(logging_level, str) and not isinstance(logging.getLevelName(logging_level.upper()), int):
        raise ValueError(f"init(logging_level={logging_level!r}): not a logging level; give one of "
                         "DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return _spill_dir_of(system_config)


def _spill_dir_of(system_config: Any) -> str | None:
    if system_config is None:
        return None
    if not isinstance(system_config, dict):
        raise TypeError(f"init(_system_config={system_config!r:.60}): give a dict, as in Ray")
    spill_dir = None
    spilling = system_config.get("object_spilling_config")
    if spilling is not None:
        try:
            spec = json.loads(spilling) if isinstance(spilling, str) else spilling
            params = spec.get("params", {}) if spec.get("type") == "filesystem" else None
            path = params.get("directory_path") if params is not None else None
        except (ValueError, AttributeError):
            path = None
        if isinstance(path, list) and len(path) == 1:
            path = path[0]
        if not isinstance(path, str):
            raise ValueError(
                f"init(_system_config={{'object_spilling_config': {spilling!r:.80}}}): sluice "
                "spills to one folder; give json.dumps({'type': 'filesystem', 'params': "
                "{'directory_path': DIR}}), or init(spill_dir=DIR)")
        spill_dir = path
    ignored = sorted(set(system_config) - {"object_spilling_config"})
    if ignored:
        warnings.warn(f"init(_system_config=...): sluice ignores {', '.join(ignored)} (Ray's internal "
                      "settings); only object_spilling_config applies here", stacklevel=3)
    return spill_dir


def apply_logging(configure_logging: bool, logging_level: int | str) -> None:
    """Set the level of the ``sluice`` logger, as Ray sets its ``ray`` logger's."""
    if configure_logging:
        level = logging_level.upper() if isinstance(logging_level, str) else logging_level
        logging.getLogger("sluice").setLevel(level)
