"""Which months a run loads, and why: the lake (with its manifest) reconciled with the source."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flows.errors import ConfigError
from flows.lake.manifest import ManifestEntry, parse_socrata_utc
from flows.months import UNKNOWN_MONTH, add_months, last_complete_month, month_range, parse_month
from flows.sources.socrata import SourceMonth


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


@dataclass(frozen=True)
class LakeMonth:
    rows: int
    manifest: ManifestEntry | None
    # why the month's file cannot be trusted (unreadable, or its footer disagrees with the
    # manifest); such a month is fetched again whatever else is true of it
    damage: str | None = None


def plan_months(
    params: RunParams,
    lake: Mapping[str, LakeMonth],
    source: Mapping[str, SourceMonth],
) -> dict[str, str]:
    """Month -> why it is fetched, in month order; months already equal to the source are left.

    Considered: every month in the range, every month the lake already holds (a loaded month
    is kept converged even outside the range), and the null-report-time partition.
    """
    in_range = set(month_range(params.start_month, params.end_month))
    refresh = (
        set(month_range(add_months(params.end_month, 1 - params.refresh_months), params.end_month))
        if params.refresh_months
        else set()
    )
    candidates = in_range | set(lake) | {UNKNOWN_MONTH}
    reasons: dict[str, str] = {}
    for month in candidates:
        reason = _reason(
            month,
            params,
            lake.get(month),
            source.get(month),
            month in in_range or month == UNKNOWN_MONTH,
            month in refresh,
        )
        if reason:
            reasons[month] = reason
    for month in params.force_months:
        # a forced month the source has no rows for, and the lake does not hold, is nothing to
        # load: writing it would leave a permanent empty partition
        if month in lake or (month in source and source[month].rows):
            reasons[month] = "forced"
    return dict(sorted(reasons.items()))


def _reason(
    month: str,
    params: RunParams,
    held: LakeMonth | None,
    src: SourceMonth | None,
    wanted: bool,
    in_refresh_window: bool,
) -> str | None:
    source_rows = src.rows if src else 0
    if held is None:
        # a month the source has no rows for is exact when absent
        return "missing" if wanted and source_rows else None
    if held.damage:
        return f"damaged file ({held.damage})"
    if params.full_refresh and wanted:
        return "full refresh"
    if held.rows != source_rows:
        return f"count changed ({held.rows} -> {source_rows})"
    if held.manifest is None:
        return "no manifest" if source_rows else None
    source_updated = parse_socrata_utc(src.updated_at if src else None)
    lake_updated = parse_socrata_utc(held.manifest.source_updated_at)
    if source_updated and (lake_updated is None or lake_updated < source_updated):
        return "rows updated"
    if in_refresh_window:
        return "refresh window"
    return None
