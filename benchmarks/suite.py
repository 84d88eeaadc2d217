"""The whole benchmark, in order: sources up, references, backfills, monthly and no-change runs."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from benchmarks.machine import load_average
from benchmarks.model import ROWS, BenchConfig, RunRow
from benchmarks.prefect_api import PrefectServer
from benchmarks.runs import Runner
from benchmarks.source import SourceProcess, SourceSpec
from flows.settings import Settings


@dataclass
class SuiteResult:
    rows: dict[str, RunRow]
    started: datetime
    finished: datetime | None = None
    load_before: str = ""
    load_after: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RunRow]:
        return [row for row in self.rows.values() if row.status.startswith("failed")]


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# what a run needs measured before it (the lake it starts from)
DEPENDS: dict[str, tuple[str, ...]] = {
    "dbt_short": ("pipeline_short_off",),
    "monthly_short": ("pipeline_short_off",),
    "dbt_full": ("pipeline_full",),
    "monthly_full": ("pipeline_full",),
    "nochange_full": ("monthly_full",),
}
NETWORK_ON = ("pipeline_short_on", "seed_short_on")
NEEDS_FULL_SOURCE = ("floor_full", "pipeline_full", "dbt_full", "monthly_full", "nochange_full")


def selected_runs(config: BenchConfig) -> set[str]:
    """The runs to measure: `--only` (or everything) plus what they need first."""
    wanted = set(config.only or ROWS)
    if config.quick:
        wanted -= set(NETWORK_ON)
        wanted.discard("dbt_full")
    todo = list(wanted)
    while todo:
        for needed in DEPENDS.get(todo.pop(), ()):
            if needed not in wanted:
                wanted.add(needed)
                todo.append(needed)
    return wanted


def skipped_reason(config: BenchConfig, key: str) -> str:
    if config.quick and key in NETWORK_ON:
        return "skipped: --quick runs with the network model off"
    if config.quick and key == "dbt_full":
        return "skipped: --quick builds dbt once"
    return "skipped: not selected (--only)"


def run_suite(config: BenchConfig, progress: Callable[[str], None] = _progress) -> SuiteResult:
    if config.work.exists():
        shutil.rmtree(config.work)
    config.work.mkdir(parents=True)
    selected = selected_runs(config)
    result = SuiteResult(
        rows={key: RunRow(key, status=skipped_reason(config, key)) for key in ROWS},
        started=datetime.now(UTC),
        load_before=load_average(),
    )
    runner = Runner(config)
    page_size = int(config.pipeline_env.get("CRIME_PAGE_SIZE", Settings().page_size))
    full = any(key in selected for key in NEEDS_FULL_SOURCE)
    off = SourceProcess(
        SourceSpec(
            config.full_start if full else config.short_start,
            config.new_month,
            config.rows_per_month,
            config.null_rows,
            latency_s=None,
            bandwidth=None,
            prime_page_size=page_size,
        ),
        config.repo,
        config.work / "logs" / "source-off.log",
    )
    on: SourceProcess | None = None
    if any(key in selected for key in NETWORK_ON):
        on = SourceProcess(
            SourceSpec(
                config.short_start,
                config.new_month,
                config.rows_per_month,
                config.null_rows,
                latency_s=config.latency_s,
                bandwidth=config.bandwidth,
                prime_page_size=page_size,
            ),
            config.repo,
            config.work / "logs" / "source-on.log",
        )
    prefect: PrefectServer | None = None
    try:
        progress(f"generating the source: {off.spec.start}..{off.spec.end}")
        off.start()
        if on is not None:
            on.start()
        if config.shared_prefect_server:
            progress("starting one Prefect API server for every run")
            prefect = PrefectServer(
                runner.base_env(), config.repo, config.work / "logs" / "prefect.log"
            )
            runner.api_url = prefect.start()
        else:
            progress("migrating the Prefect database in the scratch PREFECT_HOME")
            runner.prepare_prefect()
        off.wait_ready()
        if on is not None:
            on.wait_ready()
        for source, name in ((off, "network model off"), (on, "network model on")):
            if source is not None:
                result.sources.append(
                    f"{name}: {source.spec.start}..{source.spec.end}, "
                    f"{source.spec.rows_per_month} rows a month, ready in "
                    f"{source.ready_after_s:.0f} s with {source.primed_queries} per-month answers "
                    f"cached ahead, {source.rss_bytes() / 2**20:.0f} MB resident"
                )
        _measure(config, selected, runner, off, on, result, progress)
    finally:
        off.stop()
        if on is not None:
            on.stop()
        if prefect is not None:
            prefect.stop()
        result.finished = datetime.now(UTC)
        result.load_after = load_average()
    return result


def _measure(
    config: BenchConfig,
    selected: set[str],
    runner: Runner,
    off: SourceProcess,
    on: SourceProcess | None,
    result: SuiteResult,
    progress: Callable[[str], None],
) -> None:
    rows = result.rows
    short, last, new = config.short_start, config.last_month, config.new_month
    monthly_dbt = not config.quick

    def keep(row: RunRow) -> None:
        if config.quick and row.key in ("monthly_short", "monthly_full", "nochange_full"):
            row.notes.append("--quick: CRIME_RUN_DBT=false")
        rows[row.key] = row
        progress(f"{row.label}: {row.status}, wall {_secs(row.wall_s)}, load {_secs(row.load_s)}")

    def want(key: str) -> bool:
        return key in selected

    if want("floor_short") or want("floor_full"):
        progress("floor: fetching the months into memory, then timing parse + write")
        floor_short, floor_full = runner.floor(off, off.spec.start)
        for row in (floor_short, floor_full):
            if want(row.key):
                keep(row)
    if on is not None and want("seed_short_on"):
        keep(runner.seed("seed_short_on", on, short, last))
    if on is not None and want("pipeline_short_on"):
        keep(runner.pipeline("pipeline_short_on", on, "short-on", short, last, False, True))
    if want("seed_short_off"):
        keep(runner.seed("seed_short_off", off, short, last))
    if want("pipeline_short_off"):
        keep(runner.pipeline("pipeline_short_off", off, "short", short, last, False, True))
    if want("dbt_short"):
        keep(runner.dbt_build("dbt_short", "short"))
    if want("monthly_short"):
        keep(runner.pipeline("monthly_short", off, "short", short, new, monthly_dbt, False))
    full_start = config.full_start
    if want("pipeline_full"):
        keep(runner.pipeline("pipeline_full", off, "full", full_start, last, False, True))
    if want("dbt_full"):
        keep(runner.dbt_build("dbt_full", "full"))
    if want("monthly_full"):
        keep(runner.pipeline("monthly_full", off, "full", full_start, new, monthly_dbt, False))
    if want("nochange_full"):
        keep(runner.pipeline("nochange_full", off, "full", full_start, new, monthly_dbt, False))


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
