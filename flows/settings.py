"""One typed settings object, resolved once from environment variables with safe local defaults.

Every variable is documented in the README's Configuration section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from flows.errors import ConfigError
from flows.months import parse_month

Warehouse = Literal["duckdb", "bigquery", "none"]
MAX_PAGE_SIZE = 50_000  # the SODA 2.x maximum for $limit
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    source_url: str = "https://data.seattle.gov"
    dataset_id: str = "tazs-3rd5"
    lake_url: str = "data/lake"
    warehouse: Warehouse = "duckdb"
    duckdb_path: str = "data/warehouse.duckdb"
    start_month: str = "2008-01"
    refresh_months: int = 0
    concurrency: int = 4
    page_size: int = 50_000
    http_timeout_s: float = 60.0
    http_attempts: int = 6
    http_backoff_s: float = 1.0
    month_attempts: int = 3
    lock_wait_s: float = 0.0
    staging_dataset: str = "crime_staging"
    dbt_target: str = "duckdb"
    run_dbt: bool = True
    dbt_project_dir: str = str(PROJECT_ROOT / "dbt")
    # google cloud: one place for the names the setup script creates and the flow uses
    gcp_project: str | None = None
    gcp_keyfile: str = "creds/key.json"
    bq_location: str = "US"
    bq_dataset: str = "crime_marts"
    gcp_credentials_block: str = "seattle-crime-gcp"
    gcs_bucket_block: str = "seattle-crime-lake"
    socrata_token_block: str = "socrata-app-token"  # noqa: S105 (a block name, not a secret)
    # never printed: repr=False keeps it out of logs, artifacts and tracebacks
    app_token: str | None = field(default=None, repr=False)

    def lake_root(self) -> str:
        """The lake location: a gs:// URL as given, a local path made absolute."""
        if "://" in self.lake_url:
            return self.lake_url.rstrip("/")
        return str(Path(self.lake_url).expanduser().resolve())

    def duckdb_file(self) -> str:
        return str(Path(self.duckdb_path).expanduser().resolve())

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number: set it to an integer.") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small: it must be at least {minimum}.")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: set it to a number.") from None
    if value < 0:
        raise ConfigError(f"{name}={value} is negative: set it to zero or more.")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false.")


def _page_size(env: Mapping[str, str]) -> int:
    size = _int(env, "CRIME_PAGE_SIZE", Settings.page_size, minimum=1)
    if size > MAX_PAGE_SIZE:
        raise ConfigError(
            f"CRIME_PAGE_SIZE={size} is larger than SODA allows: use at most {MAX_PAGE_SIZE}."
        )
    return size


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (or a given mapping) and validate them."""
    env = os.environ if env is None else env
    base = Settings()
    warehouse = env.get("CRIME_WAREHOUSE", base.warehouse).strip().lower()
    if warehouse not in ("duckdb", "bigquery", "none"):
        raise ConfigError(
            f"CRIME_WAREHOUSE={warehouse!r} is not supported: use 'duckdb', 'bigquery' or "
            "'none' (the lake only)."
        )
    lake_url = env.get("CRIME_LAKE_URL", base.lake_url).strip()
    if warehouse == "bigquery" and not lake_url.startswith("gs://"):
        raise ConfigError(
            f"CRIME_WAREHOUSE=bigquery reads the lake from GCS, but CRIME_LAKE_URL={lake_url!r} "
            "is local: set CRIME_LAKE_URL=gs://BUCKET/PREFIX (terraform output lake_url)."
        )
    if warehouse == "duckdb" and lake_url.startswith("gs://"):
        raise ConfigError(
            f"CRIME_LAKE_URL={lake_url!r} is on GCS, which the DuckDB warehouse cannot read "
            "offline: set CRIME_WAREHOUSE=bigquery (or none for the lake only)."
        )
    source_url = env.get("CRIME_SOURCE_URL", base.source_url).strip().rstrip("/")
    if not source_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"CRIME_SOURCE_URL={source_url!r} is not an http(s) URL: "
            "use the portal's address, for example https://data.seattle.gov."
        )
    return Settings(
        source_url=source_url,
        dataset_id=env.get("CRIME_DATASET_ID", base.dataset_id).strip(),
        lake_url=lake_url,
        warehouse=warehouse,  # type: ignore[arg-type]
        duckdb_path=env.get("CRIME_DUCKDB_PATH", base.duckdb_path).strip(),
        start_month=parse_month(
            env.get("CRIME_START_MONTH", base.start_month), "CRIME_START_MONTH"
        ),
        refresh_months=_int(env, "CRIME_REFRESH_MONTHS", base.refresh_months),
        concurrency=_int(env, "CRIME_CONCURRENCY", base.concurrency, minimum=1),
        page_size=_page_size(env),
        http_timeout_s=_float(env, "CRIME_HTTP_TIMEOUT", base.http_timeout_s),
        http_attempts=_int(env, "CRIME_HTTP_ATTEMPTS", base.http_attempts, minimum=1),
        http_backoff_s=_float(env, "CRIME_HTTP_BACKOFF", base.http_backoff_s),
        month_attempts=_int(env, "CRIME_MONTH_ATTEMPTS", base.month_attempts, minimum=1),
        lock_wait_s=_float(env, "CRIME_LOCK_WAIT", base.lock_wait_s),
        staging_dataset=env.get("CRIME_STAGING_DATASET", base.staging_dataset).strip(),
        dbt_target=env.get("CRIME_DBT_TARGET", warehouse).strip(),
        run_dbt=_bool(env, "CRIME_RUN_DBT", base.run_dbt),
        gcp_project=env.get("CRIME_GCP_PROJECT") or None,
        gcp_keyfile=env.get("CRIME_GCP_KEYFILE", base.gcp_keyfile).strip(),
        bq_location=env.get("CRIME_BQ_LOCATION", base.bq_location).strip(),
        bq_dataset=env.get("CRIME_BQ_DATASET", base.bq_dataset).strip(),
        gcp_credentials_block=env.get(
            "CRIME_GCP_CREDENTIALS_BLOCK", base.gcp_credentials_block
        ).strip(),
        gcs_bucket_block=env.get("CRIME_GCS_BUCKET_BLOCK", base.gcs_bucket_block).strip(),
        socrata_token_block=env.get("CRIME_SOCRATA_TOKEN_BLOCK", base.socrata_token_block).strip(),
        app_token=env.get("SOCRATA_APP_TOKEN") or None,
    )
