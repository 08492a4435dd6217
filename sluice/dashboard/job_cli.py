"""``sluice job submit|status|logs|stop|list|delete``: jobs on a cluster, through its head's
job server (``--address``, else ``SLUICE_DASHBOARD_ADDRESS``, else the newest head's on
this machine), as Ray's ``ray job``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

COMMANDS = ("job",)


def add_parsers(sub: Any) -> None:
    """Add ``job`` and its subcommands to the ``sluice`` command's subparsers."""
    job = sub.add_parser("job", help="submit driver scripts to a cluster and follow them")
    verbs = job.add_subparsers(dest="verb", required=True)
    submit = verbs.add_parser("submit", help="run a command as a job: sluice job submit "
                                             "--working-dir . -- python script.py")
    submit.add_argument("--working-dir", help="a folder shipped to the job (and its tasks)")
    submit.add_argument("--runtime-env-json", help="the job's runtime_env, as JSON")
    submit.add_argument("--submission-id", help="the job's id (default: a new one)")
    submit.add_argument("--no-wait", action="store_true",
                        help="return once submitted instead of following its output")
    submit.add_argument("entrypoint", nargs=argparse.REMAINDER,
                        help="-- then the command to run")
    for name, text in (("status", "a job's status"), ("logs", "a job's driver output"),
                       ("stop", "stop a job"), ("delete", "forget an ended job")):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("job_id")
        if name == "logs":
            verb.add_argument("--follow", "-f", action="store_true",
                              help="follow the output until the job ends")
    verbs.add_parser("list", help="every job of the cluster")
    for verb in verbs.choices.values():
        verb.add_argument("--address", help="the head's dashboard, http://HOST:PORT")


def _address(given: str | None) -> str:
    from sluice.dashboard.cli import default_address

    return given or default_address()


def _follow(client: Any, job_id: str) -> Any:
    seen = 0
    while True:
        logs = client.get_job_logs(job_id)
        sys.stdout.write(logs[seen:])
        sys.stdout.flush()
        seen = len(logs)
        status = client.get_job_status(job_id)
        if status.is_terminal():
            rest = client.get_job_logs(job_id)[seen:]
            sys.stdout.write(rest)
            sys.stdout.flush()
            return status
        time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    """Run one ``sluice job`` command; 2 for bad input, 1 for no server or a failed job."""
    from sluice.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(_address(args.address))
        if args.verb == "submit":
            command = [a for a in args.entrypoint if a != "--"] if args.entrypoint[:1] == ["--"] \
                else list(args.entrypoint)
            if not command:
                raise ValueError("give the command to run after --, e.g. "
                                 "sluice job submit -- python script.py")
            env = json.loads(args.runtime_env_json) if args.runtime_env_json else {}
            if not isinstance(env, dict):
                raise ValueError(f"--runtime-env-json {args.runtime_env_json!r} is not a JSON "
                                 f"object")
            if args.working_dir:
                env["working_dir"] = args.working_dir
            import shlex

            job_id = client.submit_job(entrypoint=shlex.join(command), runtime_env=env,
                                       submission_id=args.submission_id)
            print(f"Job '{job_id}' submitted successfully", flush=True)
            if args.no_wait:
                return 0
            status = _follow(client, job_id)
            print(f"Job '{job_id}' {status.value.lower()}", flush=True)
            return 0 if status is JobStatus.SUCCEEDED else 1
        if args.verb == "list":
            from sluice.dashboard.cli import format_table

            rows = [{"submission_id": j.submission_id, "status": j.status.value,
                     "entrypoint": j.entrypoint, "message": j.message}
                    for j in client.list_jobs()]
            print(format_table(rows, ("submission_id", "status", "entrypoint", "message")))
            return 0
        if args.verb == "status":
            info = client.get_job_info(args.job_id)
            print(f"Job '{args.job_id}': {info.status.value}; {info.message}")
            return 0
        if args.verb == "logs":
            if args.follow:
                _follow(client, args.job_id)
            else:
                sys.stdout.write(client.get_job_logs(args.job_id))
            return 0
        if args.verb == "stop":
            stopped = client.stop_job(args.job_id)
            print(f"Job '{args.job_id}' {'stopped' if stopped else 'had ended already'}")
            return 0
        client.delete_job(args.job_id)
        print(f"Job '{args.job_id}' deleted")
        return 0
    except (ValueError, TypeError) as err:
        print(f"sluice job {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except (ConnectionError, RuntimeError) as err:
        print(f"sluice job {args.verb}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
