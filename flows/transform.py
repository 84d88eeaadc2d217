"""dbt build on the warehouse, through prefect-dbt so each model shows as a task in the run."""

from __future__ import annotations

import os
from pathlib import Path

from flows.errors import PipelineError
from flows.settings import Settings


def dbt_env(settings: Settings) -> dict[str, str]:
    """The variables dbt's profiles.yml and sources read (see dbt/profiles.yml)."""
    env = {
        "CRIME_DUCKDB_PATH": settings.duckdb_file(),
        "CRIME_STAGING_DATASET": settings.staging_dataset,
        "CRIME_DBT_TARGET": settings.dbt_target,
        "CRIME_BQ_DATASET": settings.bq_dataset,
        "CRIME_BQ_LOCATION": settings.bq_location,
    }
    if settings.gcp_project:
        env["CRIME_GCP_PROJECT"] = settings.gcp_project
    keyfile = Path(settings.gcp_keyfile).expanduser().resolve()
    if settings.warehouse == "bigquery" and keyfile.is_file():
        # dbt reads the same key file the credentials block points at; without one, ADC
        env["CRIME_GCP_KEYFILE"] = str(keyfile)
        env["CRIME_BQ_AUTH_METHOD"] = "service-account"
    return env


def run_dbt_build(settings: Settings, target_path: str | None = None) -> None:
    """`dbt build` (models and tests); any failure raises with dbt's own messages."""
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    for name, value in dbt_env(settings).items():
        # a value the user set for dbt (e.g. CRIME_BQ_AUTH_METHOD) wins over the derived one
        if name == "CRIME_BQ_AUTH_METHOD":
            os.environ.setdefault(name, value)
        else:
            os.environ[name] = value
    project_dir = Path(settings.dbt_project_dir)
    dbt_settings = PrefectDbtSettings(
        project_dir=project_dir,
        profiles_dir=project_dir,
        target_path=Path(target_path or project_dir / "target"),
    )
    runner = PrefectDbtRunner(settings=dbt_settings, raise_on_failure=True)
    try:
        runner.invoke(["build", "--target", settings.dbt_target])
        # warns (never fails) when the newest source row is older than the threshold
        runner.invoke(["source", "freshness", "--target", settings.dbt_target])
    except ValueError as exc:
        raise PipelineError(f"dbt failed: {exc}") from None
    finally:
        if settings.warehouse == "duckdb":
            release_duckdb()


def release_duckdb() -> None:
    """Close the DuckDB handle dbt-duckdb caches for the life of the process.

    Left open, it keeps the database file locked with dbt's configuration (a later connection
    in this process fails) and is torn down so late at exit that duckdb reports leaks.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if env is not None:
        env.close()
