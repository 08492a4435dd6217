"""The dashboard's Serve page: the applications and their deployments' status and replicas
(``serve.status()``). Registered when ``sluice.serve`` is imported."""

from __future__ import annotations

from html import escape

from sluice.dashboard.html import table
from sluice.dashboard.pages import View, register_page


def serve_page(view: View) -> str:
    """Every application, its route and each deployment's status and replicas."""
    from sluice.libs.serve.api import status

    apps = status().applications
    if not apps:
        return "<h1>Serve</h1><p class=muted>Serve is not running (no application).</p>"
    parts = ["<h1>Serve</h1>"]
    for name, app in apps.items():
        rows = [{"deployment": dep_name, "status": dep.status, "replicas": ", ".join(
                    f"{state}: {n}" for state, n in sorted(dep.replica_states.items())),
                 "message": dep.message} for dep_name, dep in app.deployments.items()]
        parts.append(f"<h2>{escape(name)}: <span class='state-{escape(app.status)}'>"
                     f"{escape(app.status)}</span></h2><p class=muted>route "
                     f"{escape(str(app.route_prefix))} {escape(app.message or '')}</p>"
                     + table(rows, ["deployment", "status", "replicas", "message"]))
    return "".join(parts)


register_page("/serve", "Serve", serve_page, order=75)
