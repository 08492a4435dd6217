"""Submit driver scripts to a cluster, as Ray's ``ray.job_submission``.

>>> from sluice.job_submission import JobSubmissionClient
>>> client = JobSubmissionClient("http://127.0.0.1:8265")              # doctest: +SKIP
>>> job = client.submit_job(entrypoint="python etl.py",                 # doctest: +SKIP
...                         runtime_env={"working_dir": "./project"})
>>> client.get_job_status(job)                                          # doctest: +SKIP
<JobStatus.SUCCEEDED: 'SUCCEEDED'>

``address`` is the head's dashboard (``sluice start --head`` prints it); the cluster's
token comes from ``SLUICE_TOKEN``, else the head's token file on this machine. A
``working_dir`` is zipped here and uploaded first; the job's driver runs in it on the
head's machine, and its tasks get it on every node through the object store.
"""

from __future__ import annotations

import enum
import io
import json
import os
import time
import urllib.parse
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_PACKAGE = 100 * 1024 * 1024
"""A working_dir larger than this (zipped) is refused, as Ray's 100 MiB."""


class JobStatus(str, enum.Enum):
    """Ray's job statuses."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        """Whether the job has ended (it will not change again)."""
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass
class JobDetails:
    """A job as the server describes it (Ray's ``JobDetails`` names)."""

    submission_id: str
    entrypoint: str
    status: JobStatus
    message: str = ""
    type: str = "SUBMISSION"
    job_id: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    driver_pid: int | None = None
    driver_exit_code: int | None = None


JobInfo = JobDetails
"""Ray's older name."""


class JobSubmissionClient:
    """Submits, follows and stops jobs on the cluster whose head dashboard is ``address``."""

    def __init__(self, address: str | None = None, create_cluster_if_needed: bool = False,
                 cookies: dict[str, Any] | None = None, metadata: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, verify: Any = True):
        from sluice.util.state_client import dashboard_url, token_for

        address = address or os.environ.get("SLUICE_DASHBOARD_ADDRESS") or \
            os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
        self.address = dashboard_url(address)
        self.metadata = dict(metadata or {})
        self.headers = dict(headers or {})
        token = token_for(self.address)
        if token and "Authorization" not in self.headers:
            self.headers["Authorization"] = f"Bearer {token}"

    # -- HTTP ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        from sluice.util.state_client import Refused, request_json

        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        kind = "application/octet-stream" if raw is not None else "application/json"
        try:
            return request_json(f"{self.address}{path}", method, data,
                                {**self.headers, "Content-Type": kind}, timeout=60)
        except Refused as err:
            if err.code in (400, 404):
                raise ValueError(err.message or f"{method} {path}: {err.code}") from None
            raise RuntimeError(f"the job server at {self.address} answered {err.code}: "
                               f"{err.message or err.reason}") from None
        except OSError as err:
            raise ConnectionError(f"no sluice job server answers at {self.address} ({err}); "
                                  f"give the head's dashboard address, which `sluice start "
                                  f"--head` prints") from None

    # -- jobs ---------------------------------------------------------------------------
    def submit_job(self, *, entrypoint: str, job_id: str | None = None,
                   runtime_env: dict[str, Any] | None = None,
                   metadata: dict[str, str] | None = None, submission_id: str | None = None,
                   entrypoint_num_cpus: float | None = None,
                   entrypoint_num_gpus: float | None = None,
                   entrypoint_memory: int | None = None,
                   entrypoint_resources: dict[str, float] | None = None) -> str:
        """Start ``entrypoint`` (a shell command) on the cluster; its submission id.
        ``runtime_env["working_dir"]``, a local folder, is uploaded first."""
        env = dict(runtime_env or {})
        folder = env.get("working_dir")
        if folder is not None and not str(folder).startswith("pkg://"):
            env["working_dir"] = self._upload(Path(str(folder)).expanduser())
        reply = self._request("POST", "/api/jobs/", {
            "entrypoint": entrypoint, "submission_id": submission_id or job_id,
            "runtime_env": env, "metadata": {**self.metadata, **(metadata or {})}})
        return str(reply["submission_id"])

    def _upload(self, folder: Path) -> str:
        if not folder.is_dir():
            raise ValueError(f"runtime_env working_dir={str(folder)!r} is not a folder")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(folder).as_posix())
        data = buffer.getvalue()
        if len(data) > MAX_PACKAGE:
            raise ValueError(f"working_dir {str(folder)!r} zips to {len(data)} bytes, more "
                             f"than {MAX_PACKAGE}; leave large data out of it")
        import hashlib

        name = f"wd_{hashlib.sha256(data).hexdigest()[:16]}"
        return str(self._request("PUT", f"/api/packages/{name}", raw=data)["uri"])

    def get_job_info(self, job_id: str) -> JobDetails:
        """The job ``job_id``; ``ValueError`` naming it when unknown."""
        return _details(self._request("GET", f"/api/jobs/{urllib.parse.quote(job_id)}"))

    def get_job_status(self, job_id: str) -> JobStatus:
        """The job's status."""
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobDetails]:
        """Every job submitted to this cluster's head."""
        return [_details(d) for d in self._request("GET", "/api/jobs/")]

    def get_job_logs(self, job_id: str) -> str:
        """What the job's driver wrote so far (stdout and stderr)."""
        return str(self._request("GET", f"/api/jobs/{urllib.parse.quote(job_id)}/logs")["logs"])

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The driver's output as it comes, until the job ends."""
        import asyncio

        seen = 0
        while True:
            logs = self.get_job_logs(job_id)
            if len(logs) > seen:
                yield logs[seen:]
                seen = len(logs)
            if self.get_job_status(job_id).is_terminal():
                rest = self.get_job_logs(job_id)[seen:]
                if rest:
                    yield rest
                return
            await asyncio.sleep(0.25)

    def stop_job(self, job_id: str) -> bool:
        """Stop the job; False when it had ended already."""
        return bool(self._request("POST", f"/api/jobs/{urllib.parse.quote(job_id)}/stop")
                    ["stopped"])

    def delete_job(self, job_id: str) -> bool:
        """Forget an ended job and its output."""
        return bool(self._request("DELETE", f"/api/jobs/{urllib.parse.quote(job_id)}")
                    ["deleted"])

    def wait_until_done(self, job_id: str, timeout_s: float | None = None,
                        poll_s: float = 0.2) -> JobStatus:
        """Poll until the job ends (or ``timeout_s`` passes); its last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.get_job_status(job_id)
            if status.is_terminal() or (deadline is not None and time.monotonic() > deadline):
                return status
            time.sleep(poll_s)


def _details(data: dict[str, Any]) -> JobDetails:
    known = {k: v for k, v in data.items() if k in JobDetails.__dataclass_fields__}
    known["status"] = JobStatus(known["status"])
    return JobDetails(**known)


__all__ = ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient"]
