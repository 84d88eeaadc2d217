"""RESULTS.md: the machine, one results table, the targets and what dominated each run."""

from __future__ import annotations

from benchmarks.machine import Machine
from benchmarks.model import ROWS, BenchConfig, RunRow, TargetResult
from benchmarks.profiles import ProfileSummary
from benchmarks.suite import SuiteResult

MB = 2**20

COLUMNS = (
    "run",
    "months",
    "rows",
    "wall (s)",
    "start-up (s)",
    "load phase (s)",
    "staging (s)",
    "dbt (s)",
    "requests",
    "MB received",
    "rows/s (load phase)",
    "peak RSS, tree (MB)",
    "CPU (s)",
)


def _num(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def table_row(row: RunRow) -> str:
    if not row.ok and not row.wall_s:
        cells = [row.label, *(["-"] * (len(COLUMNS) - 2)), row.status]
        return "| " + " | ".join(cells) + " |"
    label = row.label if row.ok else f"{row.label} ({row.status.split(';')[0]})"
    cells = [
        label,
        _num(row.months),
        _num(row.rows),
        _num(row.wall_s),
        _num(row.startup_s),
        _num(row.load_s, 2),
        _num(row.staging_s, 2),
        _num(row.dbt_s),
        _num(row.requests),
        _num(None if row.body_bytes is None else row.body_bytes / MB),
        _num(None if row.rows_per_s is None else round(row.rows_per_s)),
        _num(None if row.peak_rss is None else round(row.peak_rss / MB)),
        _num(row.cpu_s),
    ]
    return "| " + " | ".join(cells) + " |"


def results_table(rows: dict[str, RunRow]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [table_row(rows[key]) for key in ROWS]
    return lines


def targets_table(targets: list[TargetResult]) -> list[str]:
    lines = ["| target | measured | pass/miss | detail |", "|---|---|---|---|"]
    for target in targets:
        lines.append(
            f"| {target.label} | {target.measured} | **{target.verdict}** | {target.detail} |"
        )
    return lines


def phases(row: RunRow) -> str:
    if not row.wall_s:
        return ""
    parts = [
        ("start-up", row.startup_s),
        ("load phase", row.load_s),
        ("staging", row.staging_s),
        ("dbt", row.dbt_s),
    ]
    known = [(name, value) for name, value in parts if value is not None]
    if not known:
        return ""
    rest = row.wall_s - sum(value for _, value in known)
    text = ", ".join(f"{name} {value:.1f} s ({value / row.wall_s:.0%})" for name, value in known)
    return f"wall {row.wall_s:.1f} s = {text}, other {max(rest, 0):.1f} s"


def headline(row: RunRow) -> str:
    """One sentence: the largest phase of the wall time, and the top sampled activity."""
    parts = [
        ("start-up", row.startup_s),
        ("the load phase", row.load_s),
        ("staging", row.staging_s),
        ("dbt", row.dbt_s),
    ]
    known = [(name, value) for name, value in parts if value is not None]
    text = ""
    if row.wall_s and known:
        name, value = max(known, key=lambda part: part[1])
        text = f"Dominated by {name} ({value / row.wall_s:.0%} of the wall time)."
    dominant = max(known, key=lambda part: part[1])[0] if known else ""
    use_load = row.key.startswith("floor") or dominant == "the load phase"
    profile = row.load_profile if use_load and row.load_profile else row.profile
    if profile is not None and profile.top:
        where = "the load phase's" if profile is row.load_profile else "the whole process's"
        if row.key.startswith("floor"):
            where = "the timed part's"
        top = profile.top[0]
        text += f" Top of {where} samples: `{top.name}` ({top.share:.0%})."
    return text.strip()


def _profile_lines(title: str, profile: ProfileSummary | None) -> list[str]:
    if profile is None or not profile.busy_thread_seconds:
        return []
    kinds = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in profile.by_kind.items())
    lines = [f"- {title}, {profile.busy_thread_seconds:.1f} thread-s sampled: {kinds}."]
    for activity in profile.top:
        lines.append(
            f"  - `{activity.name}`: {activity.seconds:.1f} thread-s ({activity.share:.0%})"
        )
    return lines


def dominated(rows: dict[str, RunRow]) -> list[str]:
    lines: list[str] = []
    for key in ROWS:
        row = rows[key]
        if not row.ok:
            continue
        lines.append(f"**{row.label}.** {headline(row)}")
        detail = phases(row)
        if detail:
            lines.append(f"- Phases: {detail}.")
        if row.server_compute_s is not None and row.load_s:
            lines.append(
                f"- The source server computed its answers in {row.server_compute_s:.2f} s "
                "in total (before any network model delay)."
            )
        for note in row.notes:
            if "\n" not in note:
                lines.append(f"- {note}.")
        if row.key.startswith("floor"):
            lines += _profile_lines("Timed part (parse + write)", row.load_profile)
        else:
            lines += _profile_lines("Whole process", row.profile)
            lines += _profile_lines("Load phase only", row.load_profile)
        lines.append("")
    return lines


def render(
    config: BenchConfig,
    machine: Machine,
    revision: str,
    suite: SuiteResult,
    targets: list[TargetResult],
    command: str,
) -> str:
    finished = suite.finished or suite.started
    minutes = (finished - suite.started).total_seconds() / 60
    mode = "--quick (smoke test sizes; not the benchmark)" if config.quick else "full"
    network = (
        f"{config.latency_s:g} s before each response, {config.bandwidth:g} bytes/s a connection"
    )
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {suite.started:%Y-%m-%d %H:%M} UTC in {minutes:.1f} min "
        f"(mode: {mode}). Every figure below comes from this one run.",
        "",
        f"- Machine: {machine.describe()}.",
        f"- Packages: {machine.packages}.",
        f"- Code: revision {revision}.",
        f"- Load average (1/5/15 min) before: {suite.load_before}; after: {suite.load_after}.",
        f"- Short backfill: {config.months_short} months "
        f"({config.short_start}..{config.last_month}); full history: {config.months_full} "
        f"months ({config.full_start}..{config.last_month}); "
        f"monthly runs add {config.new_month}. {config.rows_per_month:,} rows a month plus "
        f"{config.null_rows} rows with no report time.",
        f"- Network model (where on): {network}.",
        "- Pipeline settings: defaults"
        + (
            f", with {', '.join(f'{k}={v}' for k, v in sorted(config.pipeline_env.items()))}"
            if config.pipeline_env
            else ""
        )
        + "; backfills with CRIME_RUN_DBT=false (dbt timed on its own), monthly and no-change runs"
        + (" with CRIME_RUN_DBT=false (--quick)." if config.quick else " as scheduled (dbt on)."),
    ]
    lines.append(
        "- Prefect: "
        + (
            "one `prefect server start` for every run (--quick or --prefect-server), so start-up "
            "has no temporary API server in it."
            if config.shared_prefect_server
            else "each run starts its own temporary API server, as `make run` does (a migrated "
            "database in a scratch PREFECT_HOME, shared by the runs)."
        )
    )
    lines += [f"- Source ({source})." for source in suite.sources]
    if config.only:
        lines.append(f"- Only these runs were asked for (--only): {', '.join(config.only)}.")
    lines += ["", "## Results", ""]
    lines += results_table(suite.rows)
    lines += [
        "",
        "- *months*: the months a run loaded (the pipeline's count includes `unknown`, the "
        "partition of rows with no report time). *wall*: the process from start to exit, as "
        "a user waits for it. *start-up*: process "
        "start to the flow's first log line (imports, Prefect's temporary API server). *load "
        "phase*: the first request the source receives (the contract check) to the last month "
        "written (the flow's `progress: N/N months done` line); for the seed loader, its month "
        "loop; for the floor, parse + write only. *staging*: rebuilding the DuckDB view over the "
        "lake. *dbt*: the flow's dbt step (staging line to the `done` line), or the `dbt build` "
        "process.",
        "- *requests* and *MB received*: counted by the source server (response bodies). *peak "
        "RSS, tree*: the largest sum of resident memory over the process and all its children, "
        "sampled every 0.1 s. *CPU*: user + system seconds of that tree.",
        "",
        "## Targets",
        "",
    ]
    lines += targets_table(targets)
    lines += [
        "",
        "## What dominated each run",
        "",
        "Profiler: pyinstrument and py-spy are not installed in the venv, and cProfile sees only "
        "the thread that starts it (months load in Prefect's worker threads), so each run's "
        "Python process ran under `benchmarks/sampler.py`, a standard-library stack sampler "
        f"(`sys._current_frames()` every {config.sample_interval_s * 1000:.0f} ms, all threads; "
        "C code shows as the Python function that called it). *thread-s*: samples times the "
        "interval, summed over threads, so four months loading at once count four times. Counted: "
        "the main thread, Prefect's task workers and prefect-dbt's threads; Prefect's event "
        "loop, heartbeat and log threads are left out. *Load phase only*: the main thread in "
        "`load_months` and the load-month task workers. Activities read `innermost "
        "pipeline frames -> library called ... deepest Prefect frame [what it was doing]`."
        if config.profile
        else "Profiling was off (--no-profile).",
        "",
    ]
    lines += dominated(suite.rows)
    return "\n".join(lines).rstrip() + "\n"
