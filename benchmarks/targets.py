"""The issue's targets, judged from the figures of one run."""

from __future__ import annotations

from benchmarks.model import RunRow, TargetResult

GB = 2**30
MB = 2**20


def _both(a: RunRow, b: RunRow) -> bool:
    return a.ok and b.ok


def _na(key: str, why: str) -> TargetResult:
    return TargetResult(key, "-", "n/a", why)


def speedup(rows: dict[str, RunRow]) -> TargetResult:
    pipeline, seed = rows["pipeline_short_on"], rows["seed_short_on"]
    if not _both(pipeline, seed) or not pipeline.load_s or seed.load_s is None:
        return _na("speedup", "the network-on runs did not both complete")
    ratio = seed.load_s / pipeline.load_s
    wall = (seed.wall_s or 0) / pipeline.wall_s if pipeline.wall_s else 0.0
    return TargetResult(
        "speedup",
        f"{ratio:.1f}x ({seed.load_s:.1f} s / {pipeline.load_s:.1f} s)",
        "pass" if ratio >= 5 else "miss",
        f"end to end (process wall): seed {seed.wall_s:.1f} s, pipeline {pipeline.wall_s:.1f} s "
        f"({wall:.1f}x)" + ("" if ratio >= 5 else f"; short of 5x by {5 / ratio:.2f}x"),
    )


def floor(rows: dict[str, RunRow]) -> TargetResult:
    pipeline, floor_row = rows["pipeline_full"], rows["floor_full"]
    if not _both(pipeline, floor_row) or not floor_row.load_s or pipeline.load_s is None:
        return _na("floor", "the full-history backfill or the floor did not complete")
    ratio = pipeline.load_s / floor_row.load_s
    wall_ratio = (pipeline.wall_s or 0) / floor_row.load_s
    return TargetResult(
        "floor",
        f"{ratio:.1f}x ({pipeline.load_s:.1f} s / {floor_row.load_s:.1f} s)",
        "pass" if ratio <= 3 else "miss",
        f"load phase against the floor; the whole process ({pipeline.wall_s:.1f} s, with "
        f"start-up and staging) is {wall_ratio:.1f}x"
        + ("" if ratio <= 3 else f"; over 3x by {ratio / 3:.2f}x"),
    )


def memory(rows: dict[str, RunRow]) -> TargetResult:
    backfills = [
        rows[key]
        for key in ("pipeline_short_on", "pipeline_short_off", "pipeline_full")
        if rows[key].ok and rows[key].peak_rss
    ]
    if not backfills:
        return _na("memory", "no backfill completed")
    worst = max(backfills, key=lambda row: row.peak_rss or 0)
    peak = worst.peak_rss or 0
    detail = f"largest: {worst.label}"
    with_dbt = [
        rows[key]
        for key in ("monthly_short", "monthly_full", "nochange_full")
        if rows[key].ok and rows[key].peak_rss and rows[key].dbt_s is not None
    ]
    if with_dbt:
        top = max(with_dbt, key=lambda row: row.peak_rss or 0)
        detail += (
            f"; not a backfill, but the runs with dbt in the flow peak higher: "
            f"{(top.peak_rss or 0) / MB:.0f} MB ({top.label})"
        )
    return TargetResult(
        "memory",
        f"{peak / MB:.0f} MB",
        "pass" if peak < GB else "miss",
        detail,
    )


def memory_ratio(rows: dict[str, RunRow]) -> TargetResult:
    short, full = rows["pipeline_short_off"], rows["pipeline_full"]
    if not _both(short, full) or not short.peak_rss or not full.peak_rss:
        return _na("memory_ratio", "a backfill did not complete")
    ratio = full.peak_rss / short.peak_rss
    return TargetResult(
        "memory_ratio",
        f"{ratio:.2f} ({full.peak_rss / MB:.0f} MB / {short.peak_rss / MB:.0f} MB)",
        "pass" if ratio <= 1.3 else "miss",
        "both with the network model off",
    )


def nochange(rows: dict[str, RunRow]) -> TargetResult:
    row = rows["nochange_full"]
    if not row.ok or row.requests is None:
        return _na("nochange", "the no-change run did not complete")
    return TargetResult(
        "nochange",
        f"{row.requests} requests",
        "pass" if row.requests <= 3 else "miss",
        f"{row.flow_s:.1f} s in the flow" if row.flow_s is not None else "",
    )


def monthly(rows: dict[str, RunRow]) -> TargetResult:
    short, full = rows["monthly_short"], rows["monthly_full"]
    if not _both(short, full) or not short.flow_s or full.flow_s is None:
        return _na("monthly", "a monthly run did not complete")
    ratio = full.flow_s / short.flow_s
    wall = (full.wall_s or 0) / short.wall_s if short.wall_s else 0.0
    return TargetResult(
        "monthly",
        f"{ratio:.2f}x ({full.flow_s:.1f} s / {short.flow_s:.1f} s)",
        "pass" if ratio <= 1.2 else "miss",
        f"the flow's own time (plan, fetch, write, staging, dbt; no process start-up); "
        f"process wall {wall:.2f}x"
        + ("" if ratio <= 1.2 else f"; over 1.2x by {ratio / 1.2:.2f}x"),
    )


def evaluate(rows: dict[str, RunRow]) -> list[TargetResult]:
    return [check(rows) for check in (speedup, floor, memory, memory_ratio, nochange, monthly)]
