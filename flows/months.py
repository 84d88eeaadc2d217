"""Month arithmetic on 'YYYY-MM' strings, the unit the lake is partitioned by."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from flows.errors import ConfigError

PUBLISHER_TZ = ZoneInfo("America/Los_Angeles")
UNKNOWN_MONTH = "unknown"  # partition for rows whose month column is null

# ascii digits only: \d would take any Unicode digit, full-width ones among them
_MONTH_RE = re.compile(r"^([0-9]{4})-([0-9]{2})$")


def parse_month(value: str, what: str = "month") -> str:
    """Return a validated 'YYYY-MM', or raise ConfigError saying what is wrong."""
    text = str(value).strip()
    match = _MONTH_RE.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise ConfigError(
            f"{what} {value!r} is not a valid month: use YYYY-MM with a month from 01 to 12, "
            "for example 2024-05."
        )
    return text


def add_months(month: str, count: int) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    index = year * 12 + (mon - 1) + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(start: str, end: str) -> list[str]:
    """Every month from start to end, both included."""
    months = []
    current = start
    while current <= end:
        months.append(current)
        current = add_months(current, 1)
    return months


def last_complete_month(now: datetime | None = None) -> str:
    """The month before the current one in the publisher's time zone."""
    local = (now or datetime.now(tz=PUBLISHER_TZ)).astimezone(PUBLISHER_TZ)
    return add_months(f"{local.year:04d}-{local.month:02d}", -1)


def month_window(month: str) -> tuple[str, str]:
    """Half-open floating-timestamp window [start, next start) for SoQL."""
    return f"{month}-01T00:00:00.000", f"{add_months(month, 1)}-01T00:00:00.000"
