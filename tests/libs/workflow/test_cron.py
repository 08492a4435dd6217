"""Cron parsing, timezone checks and DST-safe fire times (sluice/libs/workflow/cron.py)."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import pytest

from sluice.libs.workflow.cron import (
    CronError,
    check_timezone,
    fire_times,
    latest_fire_time,
    next_fire_time,
    parse_cron,
)

NY = "America/New_York"
# 2026-03-08: 02:00 EST (07:00Z) jumps to 03:00 EDT. 2026-11-01: 02:00 EDT (06:00Z) goes back to 01:00 EST.


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- DST


def test_daily_0230_spring_forward_fires_once_at_the_end_of_the_gap():
    times = fire_times(parse_cron("30 2 * * *"), NY, utc(2026, 3, 6, 12), utc(2026, 3, 10, 12))
    assert times == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),   # 02:30 does not exist: 03:00 EDT, the first instant after the gap
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
        utc(2026, 3, 10, 6, 30),
    ]


def test_daily_0230_fall_back_fires_once_a_day():
    times = fire_times(parse_cron("30 2 * * *"), NY, utc(2026, 10, 30, 12), utc(2026, 11, 2, 12))
    assert times == [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]


def test_daily_0130_fall_back_fires_at_the_first_occurrence_only():
    times = fire_times(parse_cron("30 1 * * *"), NY, utc(2026, 10, 30, 12), utc(2026, 11, 2, 12))
    # 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST) on Nov 1: only the first fires.
    assert times == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_hourly_spring_forward_fires_every_elapsed_hour():
    times = fire_times(parse_cron("0 * * * *"), NY, utc(2026, 3, 8, 3, 30), utc(2026, 3, 8, 10))
    assert times == [
        utc(2026, 3, 8, 4),   # 23:00 EST (Mar 7)
        utc(2026, 3, 8, 5),   # 00:00 EST
        utc(2026, 3, 8, 6),   # 01:00 EST
        utc(2026, 3, 8, 7),   # 03:00 EDT (also the missing 02:00 read in EST: one fire)
        utc(2026, 3, 8, 8),   # 04:00 EDT
        utc(2026, 3, 8, 9),
        utc(2026, 3, 8, 10),
    ]


def test_hourly_fall_back_fires_both_one_oclocks():
    times = fire_times(parse_cron("0 * * * *"), NY, utc(2026, 11, 1, 2, 30), utc(2026, 11, 1, 9))
    assert times == [
        utc(2026, 11, 1, 3),  # 23:00 EDT (Oct 31)
        utc(2026, 11, 1, 4),  # 00:00 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST: the day has 25 hours, one fire each
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 8),
        utc(2026, 11, 1, 9),
    ]


def test_every_30_minutes_spring_forward():
    times = fire_times(parse_cron("*/30 * * * *"), NY, utc(2026, 3, 8, 5, 10), utc(2026, 3, 8, 8, 10))
    assert times == [
        utc(2026, 3, 8, 5, 30),  # 00:30 EST
        utc(2026, 3, 8, 6, 0),   # 01:00 EST
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 7, 0),   # 03:00 EDT (02:00 EST would be this instant too)
        utc(2026, 3, 8, 7, 30),  # 03:30 EDT (02:30 EST would be this instant too)
        utc(2026, 3, 8, 8, 0),   # 04:00 EDT
    ]


def test_every_30_minutes_fall_back():
    times = fire_times(parse_cron("*/30 * * * *"), NY, utc(2026, 11, 1, 4, 10), utc(2026, 11, 1, 7, 40))
    assert times == [
        utc(2026, 11, 1, 4, 30),  # 00:30 EDT
        utc(2026, 11, 1, 5, 0),   # 01:00 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 6, 0),   # 01:00 EST
        utc(2026, 11, 1, 6, 30),  # 01:30 EST
        utc(2026, 11, 1, 7, 0),   # 02:00 EST
        utc(2026, 11, 1, 7, 30),
    ]


def test_fixed_times_in_a_gap_merge_into_one_fire():
    times = fire_times(parse_cron("0,30 2 * * *"), NY, utc(2026, 3, 8), utc(2026, 3, 8, 12))
    assert times == [utc(2026, 3, 8, 7)]


def test_half_hour_dst_shift():
    # Lord Howe Island moves from +10:30 to +11:00 at 02:00 local on 2026-10-04 (15:30Z Oct 3).
    times = fire_times(parse_cron("15 2 * * *"), "Australia/Lord_Howe", utc(2026, 10, 2), utc(2026, 10, 5))
    assert times == [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)]


@pytest.mark.parametrize("expr", ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/30 * * * *",
                                  "15 * * * *", "0,30 2 * * *", "*/20 1-3 * * *"])
@pytest.mark.parametrize("start", [utc(2026, 3, 7, 12), utc(2026, 10, 31, 12)])
def test_any_split_of_a_window_gives_the_same_fires(expr: str, start: datetime):
    """What a scheduler sees tick by tick equals the whole window: nothing skipped or doubled."""
    spec, end = parse_cron(expr), start + timedelta(days=2)
    whole = fire_times(spec, NY, start, end)
    assert len(whole) == len(set(whole))
    rng = random.Random(f"{expr}{start}")
    cuts = sorted({start + timedelta(seconds=rng.randrange(2 * 86400)) for _ in range(60)} | set(whole))
    pieces, after = [], start
    for until in [*cuts, end]:
        piece = fire_times(spec, NY, after, until)
        assert latest_fire_time(spec, NY, after, until) == (piece[-1] if piece else None)
        if piece:
            assert next_fire_time(spec, NY, after) == piece[0]
        pieces += piece
        after = until
    assert pieces == whole


# --------------------------------------------------------------------- seconds, basics


def test_six_fields_put_seconds_first():
    spec = parse_cron("*/2 * * * * *")
    assert spec.fields == ("*/2", "*", "*", "*", "*", "*")
    times = fire_times(spec, "UTC", utc(2026, 5, 1, 12, 0, 0), utc(2026, 5, 1, 12, 0, 7))
    assert times == [utc(2026, 5, 1, 12, 0, s) for s in (2, 4, 6)]


def test_six_fields_in_a_timezone():
    spec = parse_cron("15 30 9 * * MON-FRI")
    times = fire_times(spec, "Europe/Paris", utc(2026, 5, 1), utc(2026, 5, 5))  # Fri May 1 .. Mon
    assert times == [utc(2026, 5, 1, 7, 30, 15), utc(2026, 5, 4, 7, 30, 15)]


def test_aliases_and_interval_flag():
    assert parse_cron("@hourly").fields == ("0", "0", "*", "*", "*", "*")
    assert parse_cron("@hourly").interval and parse_cron("*/5 1 * * *").interval
    assert not parse_cron("@daily").interval and not parse_cron("0 9 * * MON").interval


def test_window_bounds_are_exclusive_then_inclusive():
    spec = parse_cron("0 * * * *")
    assert fire_times(spec, "UTC", utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)) == [utc(2026, 1, 1, 2)]
    assert fire_times(spec, "UTC", utc(2026, 1, 1, 2), utc(2026, 1, 1, 1)) == []
    assert latest_fire_time(spec, "UTC", utc(2026, 1, 1, 1), utc(2026, 1, 1, 1, 59)) is None


def test_latest_fire_time_over_a_long_window_is_cheap():
    spec = parse_cron("* * * * * *")
    start = utc(2025, 1, 1)
    assert latest_fire_time(spec, NY, start, utc(2026, 6, 1, 0, 0, 0, 500)) == utc(2026, 6, 1)
    assert next_fire_time(parse_cron("0 0 29 2 *"), "UTC", start) == utc(2028, 2, 29)


def test_naive_datetimes_are_refused():
    with pytest.raises(TypeError, match=r"after=datetime.datetime\(2026, 1, 1, 0, 0\) must be "
                                        r"a timezone-aware datetime"):
        fire_times(parse_cron("* * * * *"), "UTC", datetime(2026, 1, 1), utc(2026, 1, 2))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("expr", "message"), [
    ("* * * *", (r"cron expression '\* \* \* \*' has 4 fields; give 5 fields \(minute hour "
                r"day-of-month month day-of-week\) or 6 with seconds first")),
    ("0 0 0 * * * *", r"has 7 fields"),
    ("", r"cron expression '' has 0 fields"),
    ("61 * * * *", (r"cron expression '61 \* \* \* \*': the minute field '61' is not valid "
                   r"\(it takes 0-59")),
    ("0 24 * * *", r"the hour field '24' is not valid \(it takes 0-23"),
    ("0 0 32 * *", r"the day-of-month field '32' is not valid"),
    ("0 0 * 13 *", r"the month field '13' is not valid \(it takes 1-12 or JAN-DEC"),
    ("0 0 * * FUNDAY", r"the day-of-week field 'FUNDAY' is not valid"),
    ("*/0 * * * *", r"the minute field '\*/0' is not valid"),
    ("60 * * * * *", r"the second field '60' is not valid \(it takes 0-59"),
    ("0 0 30 2 *", (r"cron expression '0 0 30 2 \*' never fires: no date has day-of-month '30' "
                   r"in month '2'")),
    ("R * * * *", r"the minute field 'R' asks for a random or hashed value"),
    ("H 3 * * *", r"the minute field 'H' asks for a random or hashed value"),
    ("@reboot", r"cron expression '@reboot' has 1 fields"),
])
def test_invalid_cron_is_refused_naming_it(expr: str, message: str):
    with pytest.raises(CronError, match=message):
        parse_cron(expr)


def test_non_string_cron_is_refused():
    with pytest.raises(CronError, match=r"cron expression 5 is not a string"):
        parse_cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", None, "EST+5"])
def test_unknown_timezone_is_refused_naming_it(tz):
    message = f"unknown timezone {tz!r}; give an IANA name such as 'UTC', 'Europe/Paris' or"
    with pytest.raises(CronError, match=re.escape(message)):
        check_timezone(tz)


def test_known_timezones():
    assert check_timezone("UTC").key == "UTC"
    zone = check_timezone(NY)
    assert check_timezone(zone) is zone
