"""The checks that notice a damaged lake, on their own: manifest parsing that never raises, footers
of month files on disk and in the GCS emulator, strays named, and staging DDL that lists exactly
the month files (DuckDB for real, BigQuery as text)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from flows.errors import ConfigError, PipelineError
from flows.flow import lake_state
from flows.lake.gcs import GcsLake, encode_parquet
from flows.lake.layout import schema_strings
from flows.lake.local import LocalLake
from flows.lake.manifest import ManifestEntry, read_entries
from flows.plan import RunParams, plan_months
from flows.sources.socrata import SourceMonth
from flows.sources.specs import SPD_CRIME
from flows.warehouse.bigquery import MAX_SOURCE_URIS, external_table_ddl, month_uris
from flows.warehouse.duckdb import duckdb_staging_sql, rebuild_duckdb_staging
from tests.bq_emulator import write_lake
from tests.gcs_emulator import GcsEmulator, RecordingSession, running_emulator
from tests.socrata import generate_rows
from tests.socrata.data import month_of
from tests.test_gcs_lake import crime_table

MONTHS = ["2024-01", "2024-02", "2024-03"]


@pytest.fixture(autouse=True)
def logs_outside_a_flow_run() -> Iterator[None]:
    """lake_state is called here outside a flow run: its warnings go to the console only."""
    from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        yield


def good_entry(month: str = "2024-02", rows: int = 40) -> str:
    return ManifestEntry(month, rows, "2024-04-01T00:00:00+00:00", None, ("a:string",)).to_json()


# --- manifest entries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b'{"month": "2024-02", "rows": 4\xff\xfe0}'.decode("utf-8", "replace"), "UTF-8"),
        ('{"month": "2024-02", "rows": 1e400, "fetched_at": "x"}', "rows is inf"),
        ('{"month": "2024-02", "rows": -3, "fetched_at": "x"}', "rows is -3"),
        ('{"month": "2024-02", "rows": 12.5, "fetched_at": "x"}', "rows is 12.5"),
        ('{"month": "2024-02", "rows": "12", "fetched_at": "x"}', "rows is '12'"),
        ('{"month": "2024-02", "rows": true, "fetched_at": "x"}', "rows is True"),
        ('{"month": "2024-02", "rows": 1' + "0" * 5000 + ', "fetched_at": "x"}', ""),
        ('{"month": "2024-02"', "not JSON"),
        ("[" * 100_000 + "]" * 100_000, ""),
        ("[1, 2]", "not a JSON object"),
        ('{"month": "2024-02", "rows": 5}', "fetched_at"),
        ('{"month": "2024-02", "rows": 5, "fetched_at": "x", "schema": "a"}', "schema"),
        (good_entry(month="2024-03"), "names month '2024-03'"),
        ("", ""),
    ],
)
def test_an_unreadable_manifest_entry_is_dropped_with_a_reason_never_raised(
    text: str, says: str
) -> None:
    entries, problems = read_entries({"2024-02": text, "2024-01": good_entry("2024-01")})
    assert list(entries) == ["2024-01"]
    assert list(problems) == ["2024-02"]
    assert says in problems["2024-02"]
    assert "\n" not in problems["2024-02"]


def test_a_local_manifest_that_is_not_utf8_is_read_and_refused(tmp_path: Path) -> None:
    lake, _ = write_lake(tmp_path, generate_rows(MONTHS, 10, seed=3))
    path = lake.manifest_dir() / "2024-02.json"
    path.write_bytes(b'{"month": "2024-02", "rows": \xff}')
    entries, problems = read_entries(lake.manifest_texts())
    assert sorted(entries) == ["2024-01", "2024-03"]
    assert problems == {"2024-02": "not valid UTF-8"}


# --- local footers, strays and lake_state ----------------------------------------------------


@pytest.fixture
def local_lake(tmp_path: Path) -> tuple[LocalLake, list[dict]]:
    rows = generate_rows(MONTHS, 30, seed=5, null_report_rows=2)
    lake, _ = write_lake(tmp_path / "lake", rows)
    return lake, rows


def source_of(rows: list[dict]) -> dict[str, SourceMonth]:
    counts: dict[str, int] = {}
    for row in rows:
        month = month_of(row) or "unknown"
        counts[month] = counts.get(month, 0) + 1
    return {month: SourceMonth(count, None) for month, count in counts.items()}


def plan_for(lake: LocalLake | GcsLake, rows: list[dict]) -> dict[str, str]:
    params = RunParams(MONTHS[0], MONTHS[-1], 0, ())
    return plan_months(params, lake_state(lake), source_of(rows))


def test_an_intact_lake_plans_nothing(local_lake: tuple[LocalLake, list[dict]]) -> None:
    lake, rows = local_lake
    assert lake.strays() == []
    assert plan_for(lake, rows) == {}


def test_a_truncated_file_is_damaged_with_or_without_its_manifest(
    local_lake: tuple[LocalLake, list[dict]],
) -> None:
    lake, rows = local_lake
    path = lake.partition_dir("2024-02") / "data.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    footer = lake.footers()["2024-02"]
    assert footer.rows is None
    assert footer.problem is not None
    assert "magic bytes" in footer.problem
    assert plan_for(lake, rows) == {"2024-02": "damaged file (unreadable)"}
    (lake.manifest_dir() / "2024-02.json").unlink()
    assert plan_for(lake, rows) == {"2024-02": "damaged file (unreadable)"}


def test_an_empty_file_and_a_folder_named_data_parquet(
    local_lake: tuple[LocalLake, list[dict]],
) -> None:
    lake, rows = local_lake
    (lake.partition_dir("2024-02") / "data.parquet").write_bytes(b"")
    assert plan_for(lake, rows) == {"2024-02": "damaged file (unreadable)"}
    folder = lake.partition_dir("2024-05") / "data.parquet"
    folder.mkdir(parents=True)
    assert "2024-05" not in lake.months()
    assert str(folder) in lake.strays()


def test_strays_are_named_and_never_month_files(
    local_lake: tuple[LocalLake, list[dict]],
) -> None:
    lake, rows = local_lake
    root = Path(lake.root)
    feb = lake.partition_dir("2024-02")
    strays = [
        feb / "data (1).parquet",
        root / "report_month=2024-02.bak",
        root / "report_month=2024-02.bak" / "data.parquet",
        root / "notes.txt",
    ]
    (root / "report_month=2024-02.bak").mkdir()
    for path in (strays[0], strays[2]):
        path.write_bytes((feb / "data.parquet").read_bytes())
    strays[3].write_text("hello")
    # a writer's temp file is not a stray: it is the moment before a rename
    (feb / ".data.parquet.0123abcd.tmp").write_bytes(b"partial")

    # a stray folder is named once, as a folder
    assert lake.strays() == sorted(str(p) for p in strays if p.name != "data.parquet")
    assert lake.months() == {*MONTHS, "unknown"}
    assert lake.month_files() == {
        m: str(lake.partition_dir(m) / "data.parquet") for m in lake.months()
    }
    assert plan_for(lake, rows) == {}
    for path in strays:
        assert path.exists()


# --- DuckDB staging DDL -----------------------------------------------------------------------


def test_the_staging_view_reads_only_the_listed_files(
    local_lake: tuple[LocalLake, list[dict]], tmp_path: Path
) -> None:
    lake, rows = local_lake
    feb = lake.partition_dir("2024-02")
    (feb / "data (1).parquet").write_bytes((feb / "data.parquet").read_bytes())
    bak = Path(lake.root, "report_month=2024-02.bak")
    bak.mkdir()
    (bak / "data.parquet").write_bytes((feb / "data.parquet").read_bytes())
    files = [lake.month_files()[m] for m in sorted(lake.month_files())]

    sql = duckdb_staging_sql(SPD_CRIME, lake.root, "crime_staging", files)
    assert "*" not in sql.split(" from ", 1)[1]
    assert f"read_parquet(['{files[0]}', " in sql
    staged = rebuild_duckdb_staging(
        str(tmp_path / "w.duckdb"), SPD_CRIME, lake.root, "crime_staging", files, []
    )
    assert staged == len(rows)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        months = dict(
            con.execute(
                "select report_month, count(*) from crime_staging.spd_crime group by 1"
            ).fetchall()
        )
    assert months == {m: s.rows for m, s in source_of(rows).items()}


def test_an_empty_lake_still_gets_the_typed_view(tmp_path: Path) -> None:
    empty = duckdb_staging_sql(SPD_CRIME, str(tmp_path), "crime_staging", [])
    assert "cast(null as timestamp) as report_date_time" in empty
    assert empty.endswith("where false")
    assert (
        rebuild_duckdb_staging(
            str(tmp_path / "w.duckdb"), SPD_CRIME, str(tmp_path), "crime_staging", [], []
        )
        == 0
    )


def test_the_duckdb_ddl_refuses_a_wildcard_in_a_path_and_a_file_that_is_no_month() -> None:
    with pytest.raises(ConfigError, match="wildcard"):
        duckdb_staging_sql(
            SPD_CRIME,
            "/lake[1]/spd_crime",
            "s",
            ["/lake[1]/spd_crime/report_month=2024-01/data.parquet"],
        )
    for wrong in (
        "/lake/spd_crime/report_month=2024-01/data (1).parquet",
        "/lake/spd_crime/report_month=2024-01.bak/data.parquet",
        "/elsewhere/spd_crime/report_month=2024-01/data.parquet",
    ):
        with pytest.raises(ValueError, match="is not a month file"):
            duckdb_staging_sql(SPD_CRIME, "/lake/spd_crime", "s", [wrong])


# --- BigQuery external table DDL --------------------------------------------------------------


def test_the_external_table_lists_each_month_object_and_no_wildcard() -> None:
    root = "gs://crime-lake-test/lake/spd_crime"
    uris = month_uris(SPD_CRIME, root, ["2024-02", "unknown", "2024-01"])
    ddl = external_table_ddl("my-crime-project", "crime_staging", SPD_CRIME, root, uris)
    assert ddl == (
        "CREATE OR REPLACE EXTERNAL TABLE `my-crime-project.crime_staging.spd_crime`\n"
        "WITH PARTITION COLUMNS (report_month STRING)\n"
        "OPTIONS (\n"
        "    format = 'PARQUET',\n"
        "    uris = [\n"
        "        'gs://crime-lake-test/lake/spd_crime/report_month=2024-01/data.parquet',\n"
        "        'gs://crime-lake-test/lake/spd_crime/report_month=2024-02/data.parquet',\n"
        "        'gs://crime-lake-test/lake/spd_crime/report_month=unknown/data.parquet'\n"
        "    ],\n"
        "    hive_partition_uri_prefix = 'gs://crime-lake-test/lake/spd_crime',\n"
        "    require_hive_partition_filter = false\n"
        ")"
    )


def test_the_external_table_refuses_what_is_no_month_object_and_too_many() -> None:
    root = "gs://crime-lake-test/lake/spd_crime"
    for wrong in (
        f"{root}/*",
        f"{root}/report_month=2024-02/data (1).parquet",
        f"{root}/report_month=2024-02.bak/data.parquet",
        "gs://crime-lake-test/other/spd_crime/report_month=2024-02/data.parquet",
    ):
        with pytest.raises(ValueError, match="is not a month object"):
            external_table_ddl("p-1", "d", SPD_CRIME, root, [wrong])
    with pytest.raises(PipelineError, match="load at least one month first"):
        external_table_ddl("p-1", "d", SPD_CRIME, root, [])
    months = [f"{y:04d}-{m:02d}" for y in range(1000, 1900) for m in range(1, 13)]
    assert len(months) > MAX_SOURCE_URIS
    with pytest.raises(PipelineError, match=f"more than the {MAX_SOURCE_URIS} source URIs"):
        external_table_ddl("p-1", "d", SPD_CRIME, root, month_uris(SPD_CRIME, root, months))


# --- GCS: footers on the emulator -------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    with (
        running_emulator(tmp_path_factory.mktemp("gcs-emulator")) as running,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("STORAGE_EMULATOR_HOST", running.url)
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield running


@pytest.fixture
def session() -> RecordingSession:
    return RecordingSession()


@pytest.fixture
def gcs_lake(emulator: GcsEmulator, session: RecordingSession, tmp_path: Path) -> GcsLake:
    client = emulator.client(http=session)
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(bucket)
    lake = GcsLake(f"gs://{bucket}/lake", SPD_CRIME, client, lock_dir=str(tmp_path))
    for month, rows in (("2024-01", 30), ("2024-02", 40), ("unknown", 3)):
        table = crime_table(month, rows)
        lake.write_month(month, table)
        lake.write_manifest(
            month, ManifestEntry(month, rows, "x", None, schema_of(table)).to_json()
        )
    return lake


def schema_of(table: pa.Table) -> tuple[str, ...]:
    return schema_strings(table.schema)


def upload(lake: GcsLake, name: str, payload: bytes) -> None:
    lake._bucket.blob(name).upload_from_string(payload)


def test_gcs_footers_are_ranged_reads_and_agree_when_intact(
    gcs_lake: GcsLake, session: RecordingSession
) -> None:
    start = len(session.exchanges)
    footers = gcs_lake.footers()
    assert {m: f.rows for m, f in footers.items()} == {"2024-01": 30, "2024-02": 40, "unknown": 3}
    assert all(f.problem is None for f in footers.values())
    downloads = [e for e in session.exchanges[start:] if "alt=media" in e.url]
    assert len(downloads) == 3
    assert all(e.status == 206 and e.range and "generation=" in e.url for e in downloads)
    assert {m: s.damage for m, s in lake_state(gcs_lake).items()} == dict.fromkeys(footers)


def test_a_truncated_gcs_object_is_found_by_its_footer(gcs_lake: GcsLake) -> None:
    name = gcs_lake.object_name("2024-02")
    whole = gcs_lake._bucket.get_blob(name).download_as_bytes()
    upload(gcs_lake, name, whole[: len(whole) // 2])
    state = lake_state(gcs_lake)
    assert state["2024-02"].damage == "unreadable"
    assert state["2024-01"].damage is None
    counts = {"2024-01": 30, "2024-02": 40, "unknown": 3}
    source = {month: SourceMonth(rows, None) for month, rows in counts.items()}
    plan = plan_months(RunParams("2024-01", "2024-02", 0, ()), state, source)
    assert plan == {"2024-02": "damaged file (unreadable)"}

    # tiny, and a tail that claims a footer longer than the object: unreadable, not a traceback
    upload(gcs_lake, name, b"PAR1")
    assert gcs_lake.footers()["2024-02"].problem == "is too small to be Parquet"
    upload(gcs_lake, name, b"PAR1" + b"\0" * 20 + (10**6).to_bytes(4, "little") + b"PAR1")
    assert gcs_lake.footers()["2024-02"].problem == "has a footer longer than the file"


def test_a_gcs_footer_that_disagrees_with_its_manifest(gcs_lake: GcsLake) -> None:
    upload(gcs_lake, gcs_lake.object_name("2024-02"), encode_parquet(crime_table("2024-02", 39)))
    assert lake_state(gcs_lake)["2024-02"].damage == "39 rows, manifest says 40"
    other = crime_table("2024-02", 40).drop_columns(["latitude"])
    upload(gcs_lake, gcs_lake.object_name("2024-02"), encode_parquet(other))
    assert lake_state(gcs_lake)["2024-02"].damage == "schema differs from manifest"


def test_gcs_strays_and_unreadable_manifests(gcs_lake: GcsLake) -> None:
    base = gcs_lake.base
    payload = gcs_lake._bucket.get_blob(gcs_lake.object_name("2024-02")).download_as_bytes()
    strays = [
        f"{base}/report_month=2024-02/data (1).parquet",
        f"{base}/report_month=2024-02.bak/data.parquet",
        f"{base}/stray.txt",
    ]
    for name in strays:
        upload(gcs_lake, name, payload)
    manifest = f"{gcs_lake._manifest_prefix()}2024-01.json"
    upload(gcs_lake, manifest, b'{"month": "2024-01", "rows": \xff\xfe}')

    assert gcs_lake.strays() == sorted(f"gs://{gcs_lake.bucket_name}/{n}" for n in strays)
    assert gcs_lake.month_files() == {
        m: gcs_lake.url_of(m) for m in ("2024-01", "2024-02", "unknown")
    }
    _, problems = read_entries(gcs_lake.manifest_texts())
    assert problems == {"2024-01": "not valid UTF-8"}
    state = lake_state(gcs_lake)
    # no manifest for 2024-01 now: its count is the footer's, and it is not damaged
    assert (state["2024-01"].rows, state["2024-01"].manifest, state["2024-01"].damage) == (
        30,
        None,
        None,
    )
