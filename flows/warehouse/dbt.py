"""dbt build on the warehouse, through dbt's Python API, each node's result in the run's log.

prefect-dbt's runner (a Prefect task per dbt node) was measured 2-3x slower than this and up to
2 GB of memory on the full history (benchmarks/RESULTS.md), so the flow calls dbt directly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.errors import PipelineError
from flows.settings import Settings

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def dbt_env(settings: Settings) -> dict[str, str]:
    """The variables dbt's profiles.yml and sources read for every target (dbt/profiles.yml)."""
    env = {
        "CRIME_DUCKDB_PATH": settings.duckdb_file(),
        "CRIME_STAGING_DATASET": settings.staging_dataset,
        "CRIME_DBT_TARGET": settings.dbt_target,
        "CRIME_BQ_DATASET": settings.bq_dataset,
        "CRIME_BQ_LOCATION": settings.bq_location,
    }
    if settings.gcp_project:
        env["CRIME_GCP_PROJECT"] = settings.gcp_project
    return env


# dbt events worth a line in the run's log: each node's result and the closing summary
_LOGGED_EVENTS = frozenset(
    {
        "LogModelResult",
        "LogTestResult",
        "LogFreshnessResult",
        "FinishedRunningStats",
        "EndOfRunSummary",
        "StatsLine",
    }
)


def _log_event(logger: Logger) -> Any:
    def callback(event: Any) -> None:
        if event.info.name in _LOGGED_EVENTS and event.info.msg:
            logger.info("dbt: %s", event.info.msg)

    return callback


def _invoke(args: list[str], logger: Logger, kept: str) -> None:
    from dbt.cli.main import dbtRunner

    result = dbtRunner(callbacks=[_log_event(logger)]).invoke(args)
    if isinstance(result.exception, BaseException) and not isinstance(result.exception, Exception):
        # Ctrl-C or SIGTERM while dbt ran: an interruption, not a dbt problem
        raise result.exception
    if result.exception is not None:
        reason = str(result.exception) or type(result.exception).__name__
        raise PipelineError(f"dbt {args[0]} could not run ({reason}), so {kept}.")
    if not result.success:
        failed = [
            f"{node.node.resource_type} {node.node.name}: {node.message}"
            for node in getattr(result.result, "results", [])
            if str(node.status) in {"error", "fail", "runtime error"}
        ]
        raise PipelineError(
            f"dbt {args[0]} failed ({'; '.join(failed) or 'see the log'}), so {kept}: fix the "
            "model or the data and run again."
        )


def run_dbt_build(
    settings: Settings,
    env: Mapping[str, str],
    logger: Logger,
    kept: str,
    target_path: str | None = None,
) -> None:
    """`dbt build` (models and tests) then `dbt source freshness`; a failure raises.

    `env` is what the warehouse adds to dbt_env (credentials for BigQuery, say); `kept` says
    in the error what users still see after a failure (the warehouse knows).
    """
    variables = {**dbt_env(settings), **env}
    variables.setdefault("DBT_USE_COLORS", os.environ.get("DBT_USE_COLORS", "false"))
    with environment(variables):
        _build(settings, logger, kept, target_path)


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set variables for dbt (its profiles read os.environ) and put back what was there, so
    nothing of one run (such as a build file's path) leaks into the next one's settings."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _build(settings: Settings, logger: Logger, kept: str, target_path: str | None) -> None:
    project_dir = Path(settings.dbt_project_dir)
    common = [
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target-path",
        str(Path(target_path or project_dir / "target")),
        "--target",
        settings.dbt_target,
        "--quiet",
    ]
    _invoke(["build", *common], logger, kept)
    # warns (never fails) when the newest source row is older than the threshold
    _invoke(["source", "freshness", *common], logger, kept)
