"""Cron expressions and timezones for workflow schedules, with DST-safe fire times.

A schedule's cron expression is read in its timezone's *wall clock*; its fire
times are UTC instants. Daylight-saving changes make the wall clock skip an hour
(spring forward) or show one twice (fall back), and what a schedule does then
depends on what it says:

* A **fixed-time** schedule (its minute and hour fields are not ``*``-wildcards,
  e.g. ``30 2 * * *``) fires each of its wall times once per day. A wall time that
  does not exist fires once at the first instant after the gap (02:30 on a
  spring-forward night fires at 03:00); several such times merge into that one
  fire. A wall time shown twice fires at its first occurrence only.
* An **interval** schedule (its minute or hour field starts with ``*``, e.g.
  ``0 * * * *`` or ``*/30 * * * *``) keeps its rhythm in elapsed time, as
  classic cron does: a wall time shown twice fires at both occurrences (an
  hourly schedule fires 25 times on a fall-back day), and a wall time in a gap
  is read with the offset in force before the gap (02:15 EST is 03:15 EDT), so it
  lands where the clock would have shown it without the jump, merging with a
  fire already there.

Either way no logical run is skipped and no instant fires twice.

>>> from datetime import datetime, timezone
>>> spec = parse_cron("30 2 * * *")
>>> after = datetime(2026, 3, 7, 12, tzinfo=timezone.utc)
>>> [t.isoformat() for t in fire_times(spec, "America/New_York", after, after.replace(day=8))]
['2026-03-08T07:00:00+00:00']
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import croniter

__all__ = [
    "CronError",
    "CronSpec",
    "check_timezone",
    "fire_times",
    "latest_fire_time",
    "next_fire_time",
    "parse_cron",
    "previous_fire_time",
]

_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, optionally with #n",
}
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FORMS = (
    "5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first "
    "(second minute hour day-of-month month day-of-week)"
)
# croniter's random ("R") and hashed ("H") items would make a schedule's times
# change from one parse to the next; a stored schedule must mean one thing.
_NONDETERMINISTIC_ITEM = re.compile(r"^(R|H(\(.*\))?(/\d+)?)$", re.IGNORECASE)
# Offsets are probed this often to find every UTC offset a window of time spans;
# real zones never change offset twice within it.
_OFFSET_PROBE_STEP = timedelta(hours=6)
_UTC = timezone.utc


class CronError(ValueError):
    """A cron expression or a timezone that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A validated cron expression.

    ``expr`` is the text as given; ``fields`` are the six fields, seconds first
    (``"0"`` when five were given); ``interval`` is True when the minute or hour
    field starts with ``*`` (see the module docstring for what that changes).
    """

    expr: str
    fields: tuple[str, ...]
    interval: bool

    @property
    def croniter_expr(self) -> str:
        """The six fields in croniter's ``second_at_beginning`` form."""
        return " ".join(self.fields)


def parse_cron(expr: str) -> CronSpec:
    """Validate ``expr`` (5 fields, 6 with seconds first, or ``@hourly``-style) into a CronSpec.

    >>> parse_cron("*/2 * * * * *").fields
    ('*/2', '*', '*', '*', '*', '*')
    >>> parse_cron("0 * * * *").interval
    True
    """
    if not isinstance(expr, str):
        raise CronError(f"cron expression {expr!r} is not a string; give {_FORMS}")
    text = _ALIASES.get(expr.strip().lower(), expr.strip())
    fields = tuple(text.split())
    if len(fields) not in (5, 6):
        raise CronError(f"cron expression {expr!r} has {len(fields)} fields; give {_FORMS}")
    if len(fields) == 5:
        fields = ("0", *fields)
    for name, field in zip(_FIELDS, fields):
        if any(_NONDETERMINISTIC_ITEM.match(item) for item in field.split(",")):
            raise CronError(
                f"cron expression {expr!r}: the {name} field {field!r} asks for a random or "
                f"hashed value; write the exact time instead"
            )
    spec = CronSpec(expr, fields, fields[1].startswith("*") or fields[2].startswith("*"))
    try:
        croniter.croniter(spec.croniter_expr, datetime(2000, 1, 1), ret_type=datetime,
                          second_at_beginning=True).get_next()
    except croniter.CroniterBadDateError:
        raise CronError(
            f"cron expression {expr!r} never fires: no date has day-of-month {fields[3]!r} in "
            f"month {fields[4]!r} (with day-of-week {fields[5]!r}); fix the day or the month"
        ) from None
    except (croniter.CroniterError, ValueError, KeyError, IndexError) as exc:
        raise _field_error(expr, fields, exc) from None
    return spec


def _field_error(expr: str, fields: tuple[str, ...], exc: Exception) -> CronError:
    """A CronError naming the first field that croniter refuses on its own."""
    for index, (name, field) in enumerate(zip(_FIELDS, fields)):
        probe = ["*"] * 6
        probe[index] = field
        try:
            croniter.croniter(" ".join(probe), datetime(2000, 1, 1), second_at_beginning=True)
        except (croniter.CroniterError, ValueError, KeyError, IndexError):
            return CronError(
                f"cron expression {expr!r}: the {name} field {field!r} is not valid (it takes "
                f"{_RANGES[name]}, with *, ranges a-b, lists a,b and steps /n)"
            )
    return CronError(f"cron expression {expr!r} is not valid ({exc}); cron takes {_FORMS}")


def check_timezone(tz: str | ZoneInfo) -> ZoneInfo:
    """The ZoneInfo of an IANA timezone name; an unknown name raises CronError naming it.

    >>> check_timezone("Europe/Paris")
    zoneinfo.ZoneInfo(key='Europe/Paris')
    """
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise CronError(
            f"unknown timezone {tz!r}; give an IANA name such as 'UTC', 'Europe/Paris' or "
            f"'America/New_York' (zoneinfo.available_timezones() lists them)"
        ) from None


def fire_times(
    spec: CronSpec, tz: str | ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """Every fire time of ``spec`` in ``tz`` in ``(after, until]``: aware UTC datetimes, in order.

    ``after`` and ``until`` must be timezone-aware. Splitting a window into pieces
    gives the same fire times as the whole window (the scheduler relies on it).
    """
    window = _Window.make(spec, tz, after, until)
    found: set[datetime] = set()
    for wall in window.walls(forward=True):
        if wall > window.wall_hi:
            break
        found.update(window.instants(wall))
    return sorted(found)


def latest_fire_time(
    spec: CronSpec, tz: str | ZoneInfo, after: datetime, until: datetime
) -> datetime | None:
    """The last fire time in ``(after, until]`` (``fire_times(...)[-1]``), or None; cheap for
    long windows, since it walks back from ``until``."""
    window = _Window.make(spec, tz, after, until)
    best: datetime | None = None
    for wall in window.walls(forward=False):
        # Every instant of ``wall`` is at most wall - min_offset: once that cannot
        # beat ``best``, no earlier wall time can either.
        if wall < window.wall_lo or (best is not None and _utc(wall - window.min_offset) <= best):
            break
        for instant in window.instants(wall):
            best = instant if best is None or instant > best else best
    return best


def next_fire_time(spec: CronSpec, tz: str | ZoneInfo, after: datetime) -> datetime:
    """The first fire time after ``after`` (aware UTC)."""
    span = timedelta(days=2)
    while True:  # parse_cron refused expressions that never fire, so this ends
        window = _Window.make(spec, tz, after, after + span)
        best: datetime | None = None
        for wall in window.walls(forward=True):
            # Every instant of ``wall`` is at least wall - max_offset.
            if wall > window.wall_hi or (
                best is not None and _utc(wall - window.max_offset) >= best
            ):
                break
            for instant in window.instants(wall):
                best = instant if best is None or instant < best else best
        if best is not None:
            return best
        span *= 2


def previous_fire_time(spec: CronSpec, tz: str | ZoneInfo, before: datetime) -> datetime:
    """The last fire time strictly before ``before`` (aware UTC): where the data interval of
    a run at ``before`` starts."""
    span = timedelta(days=2)
    until = _aware_utc(before, "before") - timedelta(microseconds=1)
    while True:  # parse_cron refused expressions that never fire, and cron repeats, so this ends
        found = latest_fire_time(spec, tz, until - span, until)
        if found is not None:
            return found
        span *= 2


@dataclass(frozen=True, slots=True)
class _Window:
    """The instants ``(after, until]`` and the wall-clock range that can map into them."""

    spec: CronSpec
    tz: ZoneInfo
    after: datetime
    until: datetime
    min_offset: timedelta
    max_offset: timedelta

    @staticmethod
    def make(spec: CronSpec, tz: str | ZoneInfo, after: datetime, until: datetime) -> _Window:
        after, until = _aware_utc(after, "after"), _aware_utc(until, "until")
        zone = check_timezone(tz)
        offsets = {_offset_at(zone, after), _offset_at(zone, until)}
        probe = after + _OFFSET_PROBE_STEP
        while probe < until:
            offsets.add(_offset_at(zone, probe))
            probe += _OFFSET_PROBE_STEP
        return _Window(spec, zone, after, until, min(offsets), max(offsets))

    @property
    def wall_lo(self) -> datetime:
        return self.after.replace(tzinfo=None) + self.min_offset

    @property
    def wall_hi(self) -> datetime:
        return self.until.replace(tzinfo=None) + self.max_offset

    def walls(self, forward: bool):
        """Naive wall times matching the spec, from one end of the range (unbounded)."""
        second = timedelta(seconds=1)
        start = self.wall_lo - second if forward else self.wall_hi + second
        it = croniter.croniter(self.spec.croniter_expr, start, ret_type=datetime,
                               second_at_beginning=True)
        step = it.get_next if forward else it.get_prev
        while True:
            yield step()

    def instants(self, wall: datetime) -> list[datetime]:
        """The instants ``wall`` fires at that fall in the window."""
        return [t for t in _instants(wall, self.tz, self.spec.interval)
                if self.after < t <= self.until]


def _instants(wall: datetime, tz: ZoneInfo, interval: bool) -> tuple[datetime, ...]:
    """The UTC instants a matching wall time fires at (see the module docstring)."""
    offset0 = wall.replace(tzinfo=tz, fold=0).utcoffset()
    offset1 = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert offset0 is not None and offset1 is not None  # a ZoneInfo always has an offset
    first = _utc(wall - offset0)
    if offset0 == offset1:
        return (first,)
    second = _utc(wall - offset1)
    if offset0 > offset1:  # shown twice (clocks turned back): fold 0 is the earlier instant
        return (first, second) if interval else (first,)
    # In a gap (clocks turned forward): fold 0 reads it with the offset before the gap,
    # an instant after the gap; fold 1 with the offset after it, an instant before.
    return (first,) if interval else (_transition(tz, second, first),)


def _transition(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant in ``(before, after]`` where ``tz``'s offset changes (bisection on seconds)."""
    return _transition_ts(tz, int(before.timestamp()), int(after.timestamp()))


@functools.lru_cache(maxsize=256)
def _transition_ts(tz: ZoneInfo, lo: int, hi: int) -> datetime:
    offset_lo = _offset_at(tz, datetime.fromtimestamp(lo, _UTC))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(tz, datetime.fromtimestamp(mid, _UTC)) == offset_lo:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, _UTC)


def _offset_at(tz: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _utc(naive_utc: datetime) -> datetime:
    return naive_utc.replace(tzinfo=_UTC)


def _aware_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(
            f"{name}={value!r} must be a timezone-aware datetime; "
            f"use e.g. datetime.now(timezone.utc)"
        )
    return value.astimezone(_UTC)
