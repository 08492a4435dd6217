"""The dashboard of a cluster's head: the cluster's state from the head's scheduler, the
jobs submitted to it, the cluster token required of every request."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from sluice.dashboard.jobs import JobManager


class HeadSource:
    """The state a head's dashboard shows: its scheduler's tables, and the submitted jobs
    among the drivers connected now."""

    def __init__(self, runtime: Any, jobs: JobManager | None):
        self.runtime = runtime
        self.jobs = jobs

    def rows(self, kind: str) -> list[dict[str, Any]]:
        state = importlib.import_module("sluice.executor.state")
        s = self.runtime.scheduler
        with s.locked():
            rows = state.rows(s, kind)
        if kind == "jobs" and self.jobs is not None:
            rows += [{"job_id": job.submission_id, "type": "SUBMISSION", "status": job.status,
                      "namespace": None, "driver_pid": job.driver_pid,
                      "entrypoint": job.entrypoint, "submission_id": job.submission_id,
                      "message": job.message} for job in self.jobs.list()]
        return rows

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        """The head's copies of every node's worker log files, or the lines of one."""
        logs = importlib.import_module("sluice.executor.logs")
        folder = self.runtime.log_copies.folder
        return logs.log_files(folder) if filename is None else logs.read_log(folder, filename,
                                                                             tail)


def start_for_head(head: Any, host: str, port: int, driver_address: str) -> tuple[Any, Any]:
    """Start the dashboard (and job manager) of ``head``; (dashboard or None, jobs)."""
    from sluice.dashboard import server
    from sluice.executor.cluster import auth

    jobs = JobManager(auth.head_dir(head.port) / "jobs", driver_address, head.token)
    dashboard = server.start(HeadSource(head.runtime, jobs), host, port, token=head.token,
                             quiet=True, jobs=jobs)
    if dashboard is not None:
        print(f"  dashboard: {dashboard.url} (jobs: sluice job submit --address "
              f"{dashboard.url} -- python script.py)", flush=True)
    else:
        print("  dashboard: none (see above)", file=sys.stderr, flush=True)
    return dashboard, jobs
