"""The web dashboard: the cluster, tasks, actors, objects, jobs, logs and the compiled
Plans of what runs, served over HTTP by the runtime (``sluice.init(include_dashboard=True)``,
port 8265 as Ray's) and by a cluster's head.

Server-rendered HTML (starlette, run by uvicorn on a thread of its own), each page
refreshing its content in place every second, plus Ray's JSON state API under
``/api/v0/`` (what ``sluice list`` and ``sluice.util.state`` with an ``address`` read).
A library adds a page with :func:`register_page` without touching these.
"""

from __future__ import annotations

from sluice.dashboard import plans as _plans  # noqa: F401  (registers the Plans page)
from sluice.dashboard.pages import Page, register_page
from sluice.dashboard.server import (
    DEFAULT_PORT,
    BackendSource,
    Dashboard,
    current,
    start,
    stop,
)

__all__ = ["DEFAULT_PORT", "BackendSource", "Dashboard", "Page", "current", "register_page", "start", "stop"]
