"""What the workflow commands share: their usage error, the storage they open, and how
they read arguments and print lines (see :mod:`sluice.libs.workflow.cli`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any


class UsageError(Exception):
    """A command line the user must fix; :func:`run` prints it and returns status 2."""


def usage_errors() -> tuple[type[BaseException], ...]:
    """What a command line can get wrong: a cron, timezone, target, name, id or storage."""
    from sluice.libs.workflow.storage import StorageError

    return (StorageError, ValueError)  # CronError and TargetError are ValueErrors


def open_storage(args: argparse.Namespace, create: bool = False) -> Any:
    """The storage ``--storage`` names. Only the commands that add to it from nothing
    (``schedule add``, ``scheduler``) create it: any other one, given a folder without a
    storage (a typo), says so and creates nothing."""
    from sluice.libs.workflow.storage import WorkflowStorage

    try:
        return WorkflowStorage(args.storage, create=create)
    except usage_errors() as exc:
        raise UsageError(str(exc)) from None


def importable_cwd() -> None:
    """Targets import from the current directory first (as ``sluice plan``); workers inherit
    ``sys.path``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def parse_params(items: list[str]) -> dict[str, Any]:
    """``--param KEY=VALUE`` items as keyword arguments (VALUE read as JSON when it parses)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r} is not KEY=VALUE; e.g. --param day=2026-03-01")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params


def parse_instant(text: str, option: str, tz: Any) -> datetime:
    """An ISO 8601 date or time given to ``option``, read in ``tz`` without an offset, in UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 date or time; e.g. 2026-03-01 or "
                         f"2026-03-01T06:00:00+00:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(timezone.utc)


def range_end(text: str, tz: Any) -> tuple[datetime, bool]:
    """``--end`` as (instant, included): a date alone means its whole day, so the instant is
    the next day's 00:00 in ``tz``, excluded; a time is included."""
    from datetime import date

    try:
        day = date.fromisoformat(text)
    except ValueError:
        return parse_instant(text, "--end", tz), True
    next_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return next_day.astimezone(timezone.utc), False


def utc_iso(instant: datetime) -> str:
    """``instant`` in UTC ISO 8601, as fire records and printed lines hold it."""
    return instant.astimezone(timezone.utc).isoformat()


def clock(unix: float | None) -> str:
    """A Unix time as a UTC ISO 8601 second, or ``-`` for none."""
    if unix is None:
        return "-"
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")


def print_fire(name: str, iso: str, outcome: str, workflow_id: str | None,
                error: str | None = None) -> None:
    """Print one ``SCHEDULE  LOGICAL-TIME  OUTCOME  WORKFLOW-ID [ERROR]`` line."""
    fields = [name, iso, outcome, workflow_id or "-"] + ([one_line(error)] if error else [])
    print("  ".join(fields), flush=True)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` under ``header`` in columns two spaces apart."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def one_line(text: str) -> str:
    """``text`` on one line (its lines' contents joined by spaces)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


@contextmanager
def runtime() -> Iterator[None]:
    """The sluice runtime for a command that drives runs here: started, and shut down after,
    unless one runs already."""
    import sluice

    started = not sluice.is_initialized()
    if started:
        sluice.init()
    try:
        yield
    finally:
        if started:
            sluice.shutdown()
