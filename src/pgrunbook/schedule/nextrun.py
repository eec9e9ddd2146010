"""The next time a cron expression fires (UTC, as pg_cron schedules by default).

Understands the five-field form with ``*``, numbers, ``a-b`` ranges, ``*/n`` and ``a-b/n``
steps and comma lists (enough for pgrunbook's jobs and most hand-edited ones); anything else
(``@daily``, names, ``30 seconds``) has no computed next run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

FIELDS: Final = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
SEARCH_DAYS: Final = 5 * 366


def _field(text: str, low: int, high: int) -> set[int] | None:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if not (step_text.isdigit() or step_text == ""):
            return None
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif base.isdigit():
            start = end = int(base)
            if step_text:
                end = high
        elif "-" in base and all(p.isdigit() for p in base.split("-", 1)):
            start, end = (int(p) for p in base.split("-", 1))
        else:
            return None
        if step < 1 or start < low or end > high or start > end:
            return None
        values.update(range(start, end + 1, step))
    return values


def next_run(expression: str, after: datetime | None = None) -> datetime | None:
    """The first minute strictly after ``after`` (default: now) that matches, or None."""
    parts = expression.split()
    if len(parts) != 5:
        return None
    sets = [_field(p, low, high) for p, (low, high) in zip(parts, FIELDS, strict=True)]
    if any(s is None for s in sets):
        return None
    minutes, hours, days, months, weekdays = (s or set() for s in sets)
    weekdays = {d % 7 for d in weekdays}
    day_any, weekday_any = parts[2] == "*", parts[4] == "*"
    now = (after or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    start = now + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(SEARCH_DAYS):
        weekday = (day.weekday() + 1) % 7  # cron: 0 = Sunday
        by_day, by_weekday = day.day in days, weekday in weekdays
        # cron's rule: when both day fields are restricted, either one matching is enough
        either = not (day_any or weekday_any)
        day_ok = (by_day or by_weekday) if either else (by_day and by_weekday)
        if day.month in months and day_ok:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    return None
