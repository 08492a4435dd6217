"""Jobs submitted to a cluster: each a driver process the head's dashboard starts, watches
and stops, with its output kept (Ray's job submission server).

A job's entrypoint (a shell command) runs on the head's machine in a folder of its own
(its ``working_dir`` unpacked there when given, uploaded as a zip beforehand); its
``sluice.init()`` connects to the cluster (``SLUICE_JOB_ADDRESS``) with the job's
``runtime_env``, so its working directory reaches the nodes' workers through the object
store like any driver's; ``python`` there is the head's interpreter. Its stdout and stderr
go to ``driver.log`` in its folder. The job
table lives in the head process: a job and its status outlive the client that submitted
it. Statuses are Ray's: PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sluice.executor.init_options import JOB_ADDRESS_VAR, JOB_RUNTIME_ENV_VAR

STOP_GRACE_S = 3.0
"""How long a stopped job's driver has after SIGTERM before SIGKILL."""

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class JobError(ValueError):
    """A job request the caller must fix (an unknown id, bad input)."""


@dataclass
class JobDetails:
    """One job, with Ray's ``JobDetails`` field names."""

    submission_id: str
    entrypoint: str
    status: str = "PENDING"
    message: str = ""
    type: str = "SUBMISSION"
    job_id: str | None = None
    start_time: int | None = None     # ms since the epoch
    end_time: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    driver_pid: int | None = None
    driver_exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobManager:
    """The jobs of one head: started from ``folder`` (one subfolder each), their drivers
    connecting to ``address`` with ``token``."""

    def __init__(self, folder: Path, address: str, token: str | None):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.packages = folder / "packages"
        self.packages.mkdir(exist_ok=True)
        self.address = address
        self.token = token
        self.lock = threading.Lock()
        self.jobs: dict[str, JobDetails] = {}
        self.procs: dict[str, subprocess.Popen] = {}

    # -- packages -------------------------------------------------------------------------
    def add_package(self, name: str, data: bytes) -> str:
        """Keep an uploaded working directory (a zip); its URI for ``runtime_env``."""
        if not _ID.match(name):
            raise JobError(f"package name {name!r}: use letters, digits, '_', '-', '.'")
        try:
            zipfile.ZipFile(io.BytesIO(data)).testzip()
        except zipfile.BadZipFile:
            raise JobError(f"package {name!r} is not a zip archive") from None
        (self.packages / f"{name}.zip").write_bytes(data)
        return f"pkg://{name}"

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, entrypoint: str, submission_id: str | None = None,
               runtime_env: dict[str, Any] | None = None,
               metadata: dict[str, str] | None = None) -> str:
        """Start ``entrypoint``; its submission id."""
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise JobError(f"entrypoint={entrypoint!r}: give the command to run, e.g. "
                           f"'python script.py'")
        job_id = submission_id or f"raysubmit_{secrets.token_hex(8)}"
        if not _ID.match(job_id):
            raise JobError(f"submission_id={job_id!r}: use letters, digits, '_', '-', '.', ':'")
        env_spec = dict(runtime_env or {})
        with self.lock:
            if job_id in self.jobs:
                raise JobError(f"a job {job_id!r} exists already; give another submission_id")
            job = self.jobs[job_id] = JobDetails(job_id, entrypoint,
                                                 metadata=dict(metadata or {}),
                                                 runtime_env=env_spec)
        workdir = self.folder / job_id / "working_dir"
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            uri = env_spec.get("working_dir")
            if uri is not None:
                self._unpack(str(uri), workdir)
                env_spec["working_dir"] = str(workdir)   # shipped on by the driver
            log = open(self.folder / job_id / "driver.log", "wb")
            env = {**os.environ, JOB_ADDRESS_VAR: self.address, "RAY_ADDRESS": self.address,
                   "SLUICE_JOB_ID": job_id, "PYTHONUNBUFFERED": "1",
                   JOB_RUNTIME_ENV_VAR: json.dumps(env_spec)}
            # `python` in the entrypoint is the cluster's own interpreter (sluice installed)
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                           env.get("PATH", "")])
            if self.token:
                env["SLUICE_TOKEN"] = self.token
            proc = subprocess.Popen(["/bin/sh", "-c", entrypoint], cwd=workdir, env=env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
        except (OSError, JobError) as err:
            with self.lock:
                job.status, job.message = "FAILED", f"the job could not start: {err}"
                job.end_time = _now_ms()
            return job_id
        with self.lock:
            self.procs[job_id] = proc
            job.status, job.start_time, job.driver_pid = "RUNNING", _now_ms(), proc.pid
            job.message = "the driver runs"
        threading.Thread(target=self._watch, args=(job_id, proc), daemon=True,
                         name=f"sluice-job-{job_id}").start()
        return job_id

    def _unpack(self, uri: str, into: Path) -> None:
        if not uri.startswith("pkg://"):
            raise JobError(f"runtime_env working_dir={uri!r}: upload the folder first (the "
                           f"client does: JobSubmissionClient.submit_job(runtime_env="
                           f"{{'working_dir': 'path'}}))")
        package = self.packages / f"{uri[len('pkg://'):]}.zip"
        if not package.is_file():
            raise JobError(f"no package {uri!r} was uploaded")
        with zipfile.ZipFile(package) as archive:
            for member in archive.namelist():
                target = (into / member).resolve()
                if not str(target).startswith(str(into.resolve())):
                    raise JobError(f"package {uri!r} holds a path outside its folder: {member}")
            archive.extractall(into)

    def _watch(self, job_id: str, proc: subprocess.Popen) -> None:
        code = proc.wait()
        with self.lock:
            job = self.jobs[job_id]
            job.end_time = _now_ms()
            job.driver_exit_code = code
            if job.status == "STOPPED":
                job.message = "stopped"
            elif code == 0:
                job.status, job.message = "SUCCEEDED", "the driver exited with status 0"
            else:
                job.status = "FAILED"
                job.message = f"the driver exited with status {code}"

    def get(self, job_id: str) -> JobDetails:
        """The job ``job_id``; :class:`JobError` naming it when unknown."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise JobError(f"no job {job_id!r}; list them with `sluice job list`")
            return JobDetails(**job.to_dict())

    def list(self) -> list[JobDetails]:
        """Every job, oldest first."""
        with self.lock:
            return [JobDetails(**j.to_dict()) for j in self.jobs.values()]

    def logs(self, job_id: str) -> str:
        """What the job's driver wrote so far."""
        self.get(job_id)
        try:
            return (self.folder / job_id / "driver.log").read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, job_id: str) -> bool:
        """Stop a running job (SIGTERM to its process group, SIGKILL after
        :data:`STOP_GRACE_S`); False when it had ended already."""
        self.get(job_id)
        with self.lock:
            job = self.jobs[job_id]
            proc = self.procs.get(job_id)
            if proc is None or proc.poll() is not None or job.status != "RUNNING":
                return False
            job.status = "STOPPED"
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + STOP_GRACE_S
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return True

    def delete(self, job_id: str) -> bool:
        """Forget an ended job and its files; :class:`JobError` while it runs."""
        job = self.get(job_id)
        if job.status in ("PENDING", "RUNNING"):
            raise JobError(f"job {job_id!r} is {job.status}; stop it first")
        with self.lock:
            self.jobs.pop(job_id, None)
            self.procs.pop(job_id, None)
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return True

    def stop_all(self) -> None:
        """Stop every running job (the head is going)."""
        for job in self.list():
            if job.status == "RUNNING":
                self.stop(job.submission_id)


def _now_ms() -> int:
    return int(time.time() * 1000)
