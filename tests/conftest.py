"""Shared fixtures: a real Prefect engine (test harness) and a private lake per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "flows")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# every environment variable the loader reads; tests start from none of them
CRIME_VARIABLES = (
    "CRIME_SOURCE_URL",
    "CRIME_DATASET_ID",
    "CRIME_LAKE_URL",
    "CRIME_WAREHOUSE",
    "CRIME_DUCKDB_PATH",
    "CRIME_START_MONTH",
    "CRIME_REFRESH_MONTHS",
    "CRIME_CONCURRENCY",
    "CRIME_PAGE_SIZE",
    "CRIME_HTTP_TIMEOUT",
    "CRIME_HTTP_ATTEMPTS",
    "CRIME_HTTP_BACKOFF",
    "CRIME_MONTH_ATTEMPTS",
    "CRIME_STAGING_DATASET",
    "CRIME_DBT_TARGET",
    "CRIME_RUN_DBT",
    "CRIME_LOCK_WAIT",
    "CRIME_GCP_PROJECT",
    "CRIME_GCP_KEYFILE",
    "CRIME_BQ_LOCATION",
    "CRIME_BQ_DATASET",
    "CRIME_GCP_CREDENTIALS_BLOCK",
    "CRIME_GCS_BUCKET_BLOCK",
    "CRIME_SOCRATA_TOKEN_BLOCK",
    "SOCRATA_APP_TOKEN",
)


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect API (temporary database) for the whole session; flows run through it."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CRIME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def workdir(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A private lake and warehouse for one test, with fast retry settings."""
    clean_env.setenv("CRIME_LAKE_URL", str(tmp_path / "lake"))
    clean_env.setenv("CRIME_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    clean_env.setenv("CRIME_HTTP_BACKOFF", "0.01")
    clean_env.setenv("CRIME_HTTP_TIMEOUT", "10")
    clean_env.setenv("CRIME_REFRESH_MONTHS", "0")
    return tmp_path


# the client and reader tests log retries outside any flow run: those lines stay local instead
# of Prefect's warning that they cannot be sent to the API (an error under pytest's settings)
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
