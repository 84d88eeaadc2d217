"""Which months a run loads, and why. A plain function of the lake's contents and the parameters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flows.errors import ConfigError
from flows.months import UNKNOWN_MONTH, add_months, last_complete_month, month_range, parse_month


@dataclass(frozen=True)
class RunParams:
    start_month: str
    end_month: str
    refresh_months: int
    force_months: tuple[str, ...]
    full_refresh: bool = False


def validate_params(
    start_month: str,
    end_month: str | None,
    refresh_months: int,
    force_months: Iterable[str] | None,
    full_refresh: bool = False,
) -> RunParams:
    """Check a run's parameters; raise ConfigError with one sentence on the first bad one."""
    start = parse_month(start_month, "start_month")
    end = parse_month(end_month, "end_month") if end_month else last_complete_month()
    if start > end:
        raise ConfigError(
            f"start_month {start} is after end_month {end}: choose a start on or before the end."
        )
    if refresh_months < 0:
        raise ConfigError(f"refresh_months is {refresh_months}: it must be 0 or more.")
    forced = tuple(sorted({parse_month(m, "force month") for m in force_months or ()}))
    return RunParams(start, end, refresh_months, forced, full_refresh)


def plan_months(params: RunParams, present: set[str]) -> dict[str, str]:
    """Month -> reason ('missing', 'full refresh', 'refresh', 'forced'), in month order.

    The null-month partition is always reconciled: it is small and rows can leave it when SPD
    fills in a report time.
    """
    wanted = month_range(params.start_month, params.end_month)
    reasons: dict[str, str] = {}
    refresh_from = add_months(params.end_month, 1 - params.refresh_months)
    for month in wanted:
        if month not in present:
            reasons[month] = "missing"
        elif params.full_refresh:
            reasons[month] = "full refresh"
        elif params.refresh_months and month >= refresh_from:
            reasons[month] = "refresh"
    for month in params.force_months:
        reasons[month] = "forced"
    ordered = dict(sorted(reasons.items()))
    ordered[UNKNOWN_MONTH] = "null report time"
    return ordered
