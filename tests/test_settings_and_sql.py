from pathlib import Path

import pyarrow as pa
import pytest

from flows.errors import ConfigError
from flows.months import UNKNOWN_MONTH
from flows.settings import Settings, load_settings
from flows.sources.casting import convert_table
from flows.sources.socrata import month_where, page_params
from flows.sources.specs import SPD_CRIME
from flows.warehouse.duckdb import duckdb_staging_sql


def test_defaults_run_locally_with_nothing_set():
    settings = load_settings({})
    assert settings.source_url == "https://data.seattle.gov"
    assert settings.dataset_id == "tazs-3rd5"
    assert settings.lake_url == "data/lake"
    assert settings.warehouse == "duckdb"
    assert settings.duckdb_path == "data/warehouse.duckdb"
    assert settings.start_month == "2008-01"
    assert settings.concurrency == 4
    assert settings.app_token is None


def test_environment_overrides_and_token_never_in_repr():
    settings = load_settings(
        {
            "CRIME_SOURCE_URL": "http://127.0.0.1:9/",
            "CRIME_DATASET_ID": "abcd-1234",
            "CRIME_CONCURRENCY": "2",
            "CRIME_START_MONTH": "2020-02",
            "SOCRATA_APP_TOKEN": "s3cr3t-token",
        }
    )
    assert settings.source_url == "http://127.0.0.1:9"
    assert settings.dataset_id == "abcd-1234"
    assert settings.concurrency == 2
    assert settings.start_month == "2020-02"
    assert settings.app_token == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRIME_WAREHOUSE": "postgres"}, "use 'duckdb', 'bigquery' or 'none'"),
        ({"CRIME_START_MONTH": "2024-13"}, "CRIME_START_MONTH '2024-13' is not a valid month"),
        ({"CRIME_CONCURRENCY": "0"}, "must be at least 1"),
        ({"CRIME_CONCURRENCY": "four"}, "is not a whole number"),
        ({"CRIME_SOURCE_URL": "data.seattle.gov"}, "is not an http"),
        ({"CRIME_PAGE_SIZE": "60000"}, "at most 50000"),
        ({"CRIME_LAKE_URL": "gs://b/lake"}, "the DuckDB warehouse cannot read offline"),
        ({"CRIME_WAREHOUSE": "bigquery"}, "reads the lake from GCS, but CRIME_LAKE_URL="),
    ],
)
def test_bad_settings_fail_with_one_sentence(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_page_query_has_total_order_explicit_limit_and_half_open_window():
    params = page_params(SPD_CRIME, month_where(SPD_CRIME, "2023-04"), 50_000, 100_000)
    assert params["$where"] == (
        "report_date_time >= '2023-04-01T00:00:00.000' "
        "AND report_date_time < '2023-05-01T00:00:00.000'"
    )
    assert params["$order"] == "report_date_time, offense_id"
    assert params["$limit"] == "50000"
    assert params["$offset"] == "100000"
    assert params["$select"].startswith(":updated_at, report_number, report_date_time")
    assert month_where(SPD_CRIME, UNKNOWN_MONTH) == "report_date_time IS NULL"


def _text_table(**columns):
    names = [":updated_at", *SPD_CRIME.field_names]
    length = len(next(iter(columns.values())))
    data = {name: pa.array(columns.get(name, [None] * length), pa.string()) for name in names}
    return pa.table(data)


def test_values_failing_their_type_become_counted_nulls():
    raw = _text_table(
        **{
            ":updated_at": ["2024-05-02T10:11:12.345Z", "yesterday", None],
            "report_date_time": ["2024-05-01T08:28:24.000", "2024-02-31T00:00:00.000", None],
            "latitude": ["47.61", "REDACTED", "-1.0"],
            "longitude": ["-122.33", "-", None],
            "offense_id": ["1", "2", "3"],
        }
    )
    table, nulled = convert_table(raw, SPD_CRIME)
    assert table.schema == SPD_CRIME.arrow_schema()
    assert nulled == {"source_updated_at": 1, "report_date_time": 1, "latitude": 1, "longitude": 1}
    assert table.column("latitude").to_pylist() == [47.61, None, -1.0]
    assert str(table.column("report_date_time")[0].as_py()) == "2024-05-01 08:28:24"
    assert table.column("offense_id").to_pylist() == ["1", "2", "3"]


def test_staging_view_reads_the_hive_lake_and_an_empty_lake_gets_a_typed_view():
    files = [
        "/lake/spd_crime/report_month=2024-05/data.parquet",
        "/lake/spd_crime/report_month=unknown/data.parquet",
    ]
    sql = duckdb_staging_sql(SPD_CRIME, "/lake/spd_crime", "crime_staging", files)
    assert sql.startswith('create or replace view "crime_staging"."spd_crime" as select * from')
    # exactly the month files, never a glob wider than them
    assert f"read_parquet(['{files[0]}', '{files[1]}'], hive_partitioning = true" in sql
    empty = duckdb_staging_sql(SPD_CRIME, "/lake/spd_crime", "crime_staging", [])
    assert "cast(null as timestamp) as report_date_time" in empty
    assert "cast(null as varchar) as report_month" in empty
    assert empty.endswith("where false")


def test_settings_is_frozen():
    with pytest.raises(AttributeError):
        Settings().concurrency = 3  # type: ignore[misc]


def test_a_dotenv_file_is_read_and_the_environment_wins(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "CRIME_CONCURRENCY=3\nCRIME_PAGE_SIZE=1234\nSOCRATA_APP_TOKEN=from-dotenv\n"
    )
    clean_env.chdir(tmp_path)
    clean_env.setenv("CRIME_PAGE_SIZE", "777")
    settings = load_settings()
    assert settings.concurrency == 3
    assert settings.page_size == 777
    assert settings.app_token == "from-dotenv"
    assert "from-dotenv" not in repr(settings)


def test_a_bad_value_in_dotenv_is_the_same_one_sentence(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("CRIME_CONCURRENCY=four\n")
    clean_env.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^CRIME_CONCURRENCY='four' is not a whole number"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRIME_HTTP_TIMEOUT": "nan"}, "CRIME_HTTP_TIMEOUT=nan is not a finite number"),
        ({"CRIME_LOCK_WAIT": "inf"}, "CRIME_LOCK_WAIT=inf is not a finite number"),
        ({"CRIME_RUN_DBT": "maybe"}, "CRIME_RUN_DBT='maybe' is not a boolean"),
        ({"CRIME_LAKE_URL": "s3://bucket/lake"}, "has an unsupported scheme"),
    ],
)
def test_more_bad_settings_fail_with_one_sentence(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_an_empty_variable_means_the_default() -> None:
    settings = load_settings(
        {"CRIME_LAKE_URL": "", "CRIME_CONCURRENCY": " ", "CRIME_WAREHOUSE": ""}
    )
    assert settings.lake_url == "data/lake"
    assert settings.concurrency == 4
    assert settings.warehouse == "duckdb"
    assert settings.dbt_target == "duckdb"


def test_one_factory_per_backend_picks_by_setting(tmp_path: Path) -> None:
    from flows.lake import open_lake
    from flows.lake.local import LocalLake
    from flows.warehouse import NoWarehouse, open_warehouse
    from flows.warehouse.duckdb import DuckDbWarehouse

    local = load_settings({"CRIME_LAKE_URL": str(tmp_path / "lake")})
    assert isinstance(open_lake(local, SPD_CRIME), LocalLake)
    assert open_lake(local, SPD_CRIME).root == str(tmp_path / "lake" / "spd_crime")
    assert isinstance(open_warehouse(local), DuckDbWarehouse)
    lake_only = load_settings({"CRIME_WAREHOUSE": "none", "CRIME_LAKE_URL": "gs://my-lake/lake"})
    assert isinstance(open_warehouse(lake_only), NoWarehouse)
    with pytest.raises(ConfigError, match="names no bucket"):
        open_lake(load_settings({"CRIME_WAREHOUSE": "none", "CRIME_LAKE_URL": "gs://"}), SPD_CRIME)
