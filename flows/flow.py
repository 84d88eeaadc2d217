"""The Prefect flow. Orchestration only: every step is a plain function from another module."""

# no `from __future__ import annotations` here: prefect builds the flow's parameter model from
# the real annotations, and a served run cannot resolve them from strings
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import Annotated, Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from pydantic import Field

from flows.blocks import socrata_app_token
from flows.errors import LakeWriteError, PipelineError, lake_write_error
from flows.interrupt import WriteGate
from flows.lake import Lake, open_lake
from flows.lake.manifest import entry_for, parse_entries
from flows.plan import LakeMonth, RunParams, plan_months, validate_params
from flows.settings import Settings, load_settings
from flows.sources import MonthReader, open_source
from flows.sources.specs import SPD_CRIME, DatasetSpec
from flows.warehouse import Warehouse, open_warehouse


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


@dataclass(frozen=True)
class RunContext:
    """What one run works with, made once by the flow: settings, source, lake, warehouse."""

    settings: Settings
    reader: MonthReader
    lake: Lake
    warehouse: Warehouse
    # every month write goes through it; closed when the run stops, before the lock is freed
    gate: WriteGate

    @property
    def spec(self) -> DatasetSpec:
        return self.reader.spec


@task(name="check-source-contract", cache_policy=NO_CACHE)
def check_source_contract(reader: MonthReader) -> list[str]:
    new_fields = reader.check_contract()
    if new_fields:
        get_run_logger().warning(
            "the source has fields the pipeline does not load yet: %s", ", ".join(new_fields)
        )
    return new_fields


@task(name="load-month", task_run_name="load-{month}", cache_policy=NO_CACHE)
def load_month(
    reader: MonthReader,
    lake: Lake,
    gate: WriteGate,
    month: str,
    reason: str,
    known_count: int | None = None,
) -> MonthResult:
    """Fetch one month completely, then replace it in the lake. A failure writes nothing and
    fails this task run, with its reason, while the other months go on."""
    data = reader.fetch_month(month, known_count)
    with gate.writing():
        try:
            lake.write_month(month, data.table)
            # only now that the data is in place: the manifest never claims more than the lake
            lake.write_manifest(
                month, entry_for(month, data.table, reader.spec.updated_at_column).to_json()
            )
        except OSError as exc:
            raise lake_write_error(exc, lake.root) from None
    nulled = ", ".join(f"{k}={v}" for k, v in sorted(data.nulled.items())) or "none"
    get_run_logger().info(
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
def rebuild_staging(warehouse: Warehouse, lake: Lake, spec: DatasetSpec) -> int | None:
    manifest = sorted(parse_entries(lake.manifest_texts()).values(), key=lambda e: e.month)
    return warehouse.stage(lake, spec, manifest)


def load_months(
    run: RunContext, plan: dict[str, str], counts: dict[str, int] | None = None
) -> list[MonthResult]:
    """Submit months with at most `concurrency` in flight, reporting progress as they finish.

    A month that fails is a failed task run; it is collected here as a result with its error,
    so the other months still load and the flow fails at the end naming it.
    """
    logger = get_run_logger()
    # sync_compatible: called from a sync flow it returns the id, never a coroutine
    progress = cast(
        UUID, create_progress_artifact(0.0, key="load-progress", description="Months loaded")
    )
    in_flight: dict[PrefectFuture[MonthResult], tuple[str, str]] = {}
    results: list[MonthResult] = []
    last_report = time.monotonic()

    def collect(future: PrefectFuture[MonthResult]) -> MonthResult:
        month, reason = in_flight.pop(future)
        # a failed task run hands back its exception instead of a MonthResult
        outcome: object = future.result(raise_on_failure=False)
        if isinstance(outcome, MonthResult):
            return outcome
        if isinstance(outcome, LakeWriteError):
            raise outcome  # no other month can be written either: stop the run
        if isinstance(outcome, PipelineError):
            return MonthResult(month, reason, error=str(outcome))
        if isinstance(outcome, BaseException):
            raise outcome  # not a problem of the data: a bug or the machine, so stop
        raise TypeError(f"load-{month} returned {outcome!r}, not a MonthResult")

    def collect_finished() -> None:
        nonlocal last_report
        # the first month to finish frees its slot, not the oldest one
        while True:
            done, _ = wait(list(in_flight), timeout=0.02)
            if done:
                break
        results.extend(collect(future) for future in done)
        finished = len(results)
        # the progress artifact is an API round trip: at most once a second, and at the end
        if time.monotonic() - last_report >= 1.0 or finished == len(plan):
            update_progress_artifact(progress, 100.0 * finished / len(plan))
            logger.info("progress: %d/%d months done", finished, len(plan))
            last_report = time.monotonic()

    try:
        for month, reason in plan.items():
            while len(in_flight) >= run.settings.concurrency:
                collect_finished()
            known = (counts or {}).get(month, 0 if counts is not None else None)
            future = load_month.submit(run.reader, run.lake, run.gate, month, reason, known)
            in_flight[future] = (month, reason)
        while in_flight:
            collect_finished()
    except BaseException:
        # interrupted, terminated or a fatal error: submit nothing more, let the writes in
        # progress finish and refuse the rest, so that nothing writes once the lock is freed
        run.gate.close()
        if in_flight:
            logger.warning(
                "stopping: %d month(s) in flight are not written (%s)",
                len(in_flight),
                ", ".join(sorted(month for month, _ in in_flight.values())),
            )
        raise
    return sorted(results, key=lambda r: r.month)


def lake_state(lake: Lake) -> dict[str, LakeMonth]:
    """What the lake holds per month, each file's footer checked against its manifest entry.

    The count is the manifest's, or the file's own when it has none (an unreadable entry is
    none: its month is checked in full). A file that cannot be read, or whose footer's rows or
    schema disagree with its entry, is damaged and fetched again. What is in the dataset folder
    but is no month file is named in a warning and left alone: staging never reads it.
    """
    # imported here so that this check stays one self-contained change to the module
    import logging

    from prefect.exceptions import MissingContextError

    from flows.lake.manifest import footer_disagreement, read_entries

    try:
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
    except MissingContextError:  # called outside a flow run (tests, scripts)
        logger = logging.getLogger("flows.flow")
    manifests, unreadable = read_entries(lake.manifest_texts())
    for month, problem in sorted(unreadable.items()):
        logger.warning(
            "the manifest entry of %s is unreadable (%s): it is ignored and the month is "
            "checked in full against the source",
            month,
            problem,
        )
    strays = lake.strays()
    if strays:
        logger.warning(
            "%d path(s) in the lake are no month file; staging ignores them and nothing "
            "deletes them: %s",
            len(strays),
            ", ".join(strays),
        )
    state = {}
    for month, footer in lake.footers().items():
        entry = manifests.get(month)
        damage = (
            footer_disagreement(entry, footer)
            if entry
            else ("unreadable" if footer.problem else None)
        )
        if damage:
            logger.warning(
                "%s in the lake is damaged (%s%s): it will be fetched again",
                month,
                damage,
                f": {footer.problem}" if footer.problem else "",
            )
        rows = entry.rows if entry else (footer.rows or 0)
        state[month] = LakeMonth(rows, entry, damage)
    return state


def load_and_build(run: RunContext, params: RunParams, new_fields: list[str]) -> RunSummary:
    """The part of a run that writes: months into the lake, then staging and dbt."""
    logger = get_run_logger()
    source = run.reader.months()
    plan = plan_months(params, lake_state(run.lake), source)
    logger.info(
        "%d month(s) differ from the source: fetching them from %s dataset %s into %s "
        "(%d in parallel)",
        len(plan),
        run.spec.portal_url,
        run.spec.dataset_id,
        run.lake.root,
        run.settings.concurrency,
    )
    counts = {month: stats.rows for month, stats in source.items()}
    results = load_months(run, plan, counts) if plan else []
    summary = RunSummary(results, new_fields=new_fields)
    summary.staging_rows = rebuild_staging(run.warehouse, run.lake, run.spec)
    if summary.staging_rows is None:
        logger.info("CRIME_WAREHOUSE=none: the lake is loaded; no staging and no dbt")
    else:
        logger.info(
            "staging %s.%s shows %d rows",
            run.settings.staging_dataset,
            run.spec.name,
            summary.staging_rows,
        )
        if run.settings.run_dbt:
            run.warehouse.build(logger)
            publish_quality(run.warehouse, summary)
        # what users read is replaced only now, after staging, models and tests passed
        run.warehouse.publish()
    summary.requests = run.reader.requests_made
    return summary


def publish_quality(warehouse: Warehouse, summary: RunSummary) -> None:
    """Per month loaded: values nulled for failing their type (loader) and sentinels cleaned
    by staging (dbt's rpt_data_quality), so a data owner sees the quality of each load."""
    loaded = {m.month: m for m in summary.months if not m.error}
    rows = []
    for quality in warehouse.data_quality(sorted(loaded)):
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


MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"  # ascii digits: \d is any Unicode digit
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
) -> dict[str, Any]:
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
) -> dict[str, Any]:
    logger = get_run_logger()
    started = time.monotonic()
    package_logger = logging.getLogger("flows")
    if package_logger.level == logging.NOTSET:
        # the modules' own INFO lines (token source, blocks used) reach the run's log when
        # PREFECT_LOGGING_EXTRA_LOGGERS names flows, as the CLI sets it; the root is WARNING
        package_logger.setLevel(logging.INFO)
    params: RunParams = validate_params(
        start_month or settings.start_month,
        end_month,
        settings.refresh_months if refresh_months is None else refresh_months,
        force_months,
        full_refresh,
    )
    spec = spec.with_source(settings.source_url, settings.dataset_id)
    gate = WriteGate()
    run = RunContext(
        settings=settings,
        reader=open_source(settings, spec, socrata_app_token(settings), gate.stopped),
        lake=open_lake(settings, spec),
        warehouse=open_warehouse(settings),
        gate=gate,
    )
    try:
        new_fields = check_source_contract(run.reader)
        with ExitStack() as held:
            try:
                held.enter_context(run.lake.lock(settings.lock_wait_s))
            except OSError as exc:
                raise lake_write_error(exc, run.lake.root) from None
            summary = load_and_build(run, params, new_fields)
    finally:
        gate.close()
        run.reader.close()
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
