"""The Prefect flow. Orchestration only: every step is a plain function from another module."""

# no `from __future__ import annotations` here: prefect builds the flow's parameter model from
# the real annotations, and a served run cannot resolve them from strings
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from pydantic import Field

from flows.errors import PipelineError
from flows.lake import Lake, open_lake
from flows.lake.manifest import entry_for, parse_entries
from flows.plan import LakeMonth, RunParams, plan_months, validate_params
from flows.settings import Settings, load_settings
from flows.sources.http import SocrataClient
from flows.sources.socrata import check_contract, fetch_month, source_months
from flows.sources.specs import SPD_CRIME, DatasetSpec
from flows.warehouse.dbt import run_dbt_build
from flows.warehouse.duckdb import duckdb_data_quality, rebuild_duckdb_staging


@dataclass
class MonthResult:
    month: str
    reason: str
    rows: int = 0
    pages: int = 0
    requests: int = 0
    seconds: float = 0.0
    nulled: dict[str, int] = dataclass_field(default_factory=dict)
    error: str = ""

    @property
    def values_nulled(self) -> int:
        return sum(self.nulled.values())


@dataclass
class RunSummary:
    months: list[MonthResult]
    staging_rows: int | None = None
    seconds: float = 0.0
    requests: int = 0
    new_fields: list[str] = dataclass_field(default_factory=list)

    @property
    def failed(self) -> list[MonthResult]:
        return [m for m in self.months if m.error]

    @property
    def rows_loaded(self) -> int:
        return sum(m.rows for m in self.months if not m.error)


def make_client(settings: Settings) -> SocrataClient:
    return SocrataClient(
        settings.source_url,
        app_token=settings.app_token,
        timeout_s=settings.http_timeout_s,
        attempts=settings.http_attempts,
        backoff_s=settings.http_backoff_s,
        pool_size=max(settings.concurrency, 4),
    )


@task(name="check-source-contract", cache_policy=NO_CACHE)
def check_source_contract(client: SocrataClient, spec: DatasetSpec) -> list[str]:
    new_fields = check_contract(client, spec)
    if new_fields:
        get_run_logger().warning(
            "the source has fields the pipeline does not load yet: %s", ", ".join(new_fields)
        )
    return new_fields


@task(name="load-month", task_run_name="load-{month}", cache_policy=NO_CACHE)
def load_month(
    client: SocrataClient,
    spec: DatasetSpec,
    lake: Lake,
    settings: Settings,
    month: str,
    reason: str,
    known_count: int | None = None,
) -> MonthResult:
    """Fetch one month completely, then replace it in the lake. A failure writes nothing."""
    logger = get_run_logger()
    try:
        data = fetch_month(
            client, spec, month, settings.page_size, settings.month_attempts, known_count
        )
    except PipelineError as exc:
        logger.error("%s: %s", month, exc)
        return MonthResult(month, reason, error=str(exc))
    lake.write_month(month, data.table)
    # only now that the data is in place: the manifest never claims more than the lake holds
    lake.write_manifest(month, entry_for(month, data.table, spec.updated_at_column).to_json())
    nulled = ", ".join(f"{k}={v}" for k, v in sorted(data.nulled.items())) or "none"
    logger.info(
        "%s (%s): %d rows in %d page(s), %.1fs; values nulled: %s",
        month,
        reason,
        data.rows,
        data.pages,
        data.seconds,
        nulled,
    )
    return MonthResult(
        month, reason, data.rows, data.pages, data.requests, round(data.seconds, 2), data.nulled
    )


@task(name="rebuild-staging", cache_policy=NO_CACHE)
def rebuild_staging(settings: Settings, spec: DatasetSpec, lake: Lake) -> int:
    manifest = sorted(parse_entries(lake.manifest_texts()).values(), key=lambda e: e.month)
    if settings.warehouse == "bigquery":
        from flows.warehouse.bigquery import (
            stage_lake_in_bigquery,  # google clients load only when used
        )

        return stage_lake_in_bigquery(
            settings, spec, lake.root, manifest, has_files=bool(lake.months())
        )
    return rebuild_duckdb_staging(
        settings.duckdb_file(),
        spec,
        lake.root,
        settings.staging_dataset,
        bool(lake.months()),
        manifest,
    )


def load_months(
    client: SocrataClient,
    spec: DatasetSpec,
    lake: Lake,
    settings: Settings,
    plan: dict[str, str],
    counts: dict[str, int] | None = None,
) -> list[MonthResult]:
    """Submit months with at most `concurrency` in flight, reporting progress as they finish."""
    logger = get_run_logger()
    progress = create_progress_artifact(0.0, key="load-progress", description="Months loaded")
    in_flight: list[PrefectFuture[MonthResult]] = []
    results: list[MonthResult] = []
    last_report = time.monotonic()

    def collect_finished(block: bool) -> None:
        nonlocal in_flight, last_report
        # the first month to finish frees its slot, not the oldest one
        while True:
            done, pending = wait(in_flight, timeout=0.02)
            if done or not block:
                break
        in_flight = list(pending)
        results.extend(future.result() for future in done)
        finished = len(results)
        # the progress artifact is an API round trip: at most once a second, and at the end
        if done and (time.monotonic() - last_report >= 1.0 or finished == len(plan)):
            update_progress_artifact(progress, 100.0 * finished / len(plan))
            logger.info("progress: %d/%d months done", finished, len(plan))
            last_report = time.monotonic()

    for month, reason in plan.items():
        while len(in_flight) >= settings.concurrency:
            collect_finished(block=True)
        known = (counts or {}).get(month, 0 if counts is not None else None)
        in_flight.append(load_month.submit(client, spec, lake, settings, month, reason, known))
    while in_flight:
        collect_finished(block=True)
    return sorted(results, key=lambda r: r.month)


def lake_state(lake: Lake) -> dict[str, LakeMonth]:
    """What the lake holds per month: the manifest's count, or the file's own when it has none."""
    manifests = parse_entries(lake.manifest_texts())
    state = {}
    for month in lake.months():
        entry = manifests.get(month)
        state[month] = LakeMonth(entry.rows if entry else lake.row_count(month), entry)
    return state


def load_and_build(
    client: SocrataClient,
    spec: DatasetSpec,
    lake: Lake,
    settings: Settings,
    params: RunParams,
    new_fields: list[str],
) -> RunSummary:
    """The part of a run that writes: months into the lake, then staging and dbt."""
    logger = get_run_logger()
    source = source_months(client, spec)
    plan = plan_months(params, lake_state(lake), source)
    logger.info(
        "%d month(s) differ from the source: fetching them from %s dataset %s into %s "
        "(%d in parallel)",
        len(plan),
        spec.portal_url,
        spec.dataset_id,
        lake.root,
        settings.concurrency,
    )
    counts = {month: stats.rows for month, stats in source.items()}
    results = load_months(client, spec, lake, settings, plan, counts) if plan else []
    summary = RunSummary(results, new_fields=new_fields)
    if settings.warehouse == "none":
        logger.info("CRIME_WAREHOUSE=none: the lake is loaded; no staging and no dbt")
    else:
        summary.staging_rows = rebuild_staging(settings, spec, lake)
        logger.info(
            "staging %s.%s shows %d rows",
            settings.staging_dataset,
            spec.name,
            summary.staging_rows,
        )
        if settings.run_dbt:
            run_dbt_build(settings, logger)
            if settings.warehouse == "duckdb":
                publish_quality(settings, summary)
    summary.requests = client.requests_made
    return summary


def publish_quality(settings: Settings, summary: RunSummary) -> None:
    """Per month loaded: values nulled for failing their type (loader) and sentinels cleaned
    by staging (dbt's rpt_data_quality), so a data owner sees the quality of each load."""
    loaded = {m.month: m for m in summary.months if not m.error}
    rows = []
    for quality in duckdb_data_quality(settings.duckdb_file(), sorted(loaded)):
        month = str(quality.pop("report_month"))
        typed = loaded[month].nulled
        rows.append(
            {
                "month": month,
                **{f"{column} (type)": count for column, count in sorted(typed.items())},
                **{key: value for key, value in quality.items() if key != "row_count"},
            }
        )
        cleaned = {k: v for k, v in quality.items() if k != "row_count" and v}
        get_run_logger().info(
            "%s quality: nulled for type %s; cleaned in staging %s",
            month,
            typed or "none",
            cleaned or "none",
        )
    if rows:
        create_table_artifact(rows, key="data-quality", description="Values nulled or cleaned")


def publish_summary(summary: RunSummary) -> None:
    rows = [
        {
            "month": m.month,
            "reason": m.reason,
            "rows": m.rows,
            "pages": m.pages,
            "requests": m.requests,
            "seconds": m.seconds,
            "values nulled": m.values_nulled,
            "nulled by column": ", ".join(f"{k}={v}" for k, v in sorted(m.nulled.items())),
            "error": m.error,
        }
        for m in summary.months
    ]
    create_table_artifact(
        rows,
        key="load-summary",
        description=(
            f"{len(summary.months)} month(s), {summary.rows_loaded} rows, "
            f"{len(summary.failed)} failed, {summary.requests} requests, {summary.seconds:.1f}s"
        ),
    )


MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
Month = Annotated[str, Field(pattern=MONTH_PATTERN, examples=["2024-05"])]


@flow(name="parent_process_data")
def parent_process_data(
    start_month: Annotated[
        Month | None,
        Field(description="First month to keep loaded, YYYY-MM (default CRIME_START_MONTH)."),
    ] = None,
    end_month: Annotated[
        Month | None,
        Field(description="Last month, YYYY-MM (default: the last complete month in Seattle)."),
    ] = None,
    refresh_months: Annotated[
        int | None,
        Field(ge=0, le=600, description="Trailing months fetched again even if loaded."),
    ] = None,
    force_months: Annotated[
        list[Month] | None,
        Field(description="Months fetched again whatever the lake holds, YYYY-MM each."),
    ] = None,
    full_refresh: Annotated[
        bool, Field(description="Fetch every month in the range again.")
    ] = False,
) -> dict:
    """Load every missing month of SPD crime data into the lake, then rebuild the warehouse.

    Args:
        start_month: First month to keep loaded, YYYY-MM (default CRIME_START_MONTH, 2008-01).
        end_month: Last month, YYYY-MM (default: the last complete month in Seattle).
        refresh_months: Trailing months fetched again even if loaded, because SPD revises
            recent records (default CRIME_REFRESH_MONTHS, 0).
        force_months: Months fetched again whatever the lake holds, YYYY-MM each.
        full_refresh: Fetch every month from start_month to end_month again.
    """
    return run_pipeline(
        load_settings(), start_month, end_month, refresh_months, force_months, full_refresh
    )


def run_pipeline(
    settings: Settings,
    start_month: str | None = None,
    end_month: str | None = None,
    refresh_months: int | None = None,
    force_months: Sequence[str] | None = None,
    full_refresh: bool = False,
    spec: DatasetSpec = SPD_CRIME,
) -> dict:
    logger = get_run_logger()
    started = time.monotonic()
    params: RunParams = validate_params(
        start_month or settings.start_month,
        end_month,
        settings.refresh_months if refresh_months is None else refresh_months,
        force_months,
        full_refresh,
    )
    spec = spec.with_source(settings.source_url, settings.dataset_id)
    lake = open_lake(settings, spec)
    client = make_client(settings)
    try:
        new_fields = check_source_contract(client, spec)
        with lake.lock(settings.lock_wait_s):
            summary = load_and_build(client, spec, lake, settings, params, new_fields)
    finally:
        client.close()
    summary.seconds = round(time.monotonic() - started, 2)
    publish_summary(summary)
    logger.info(
        "done: %d month(s), %d rows, %d failed, %d requests, %.1fs",
        len(summary.months),
        summary.rows_loaded,
        len(summary.failed),
        summary.requests,
        summary.seconds,
    )
    if summary.failed:
        names = ", ".join(m.month for m in summary.failed)
        raise PipelineError(
            f"{len(summary.failed)} month(s) could not be loaded ({names}); the others were "
            f"loaded and nothing partial was written: run again to retry them. "
            f"First error: {summary.failed[0].error}"
        )
    return {
        "months": [asdict(m) for m in summary.months],
        "rows_loaded": summary.rows_loaded,
        "staging_rows": summary.staging_rows,
        "requests": summary.requests,
        "seconds": summary.seconds,
    }
