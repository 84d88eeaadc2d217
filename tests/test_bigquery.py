"""The BigQuery staging step: its DDL, and the step itself against bqemulator.

No emulator runs `CREATE EXTERNAL TABLE`, so the DDL is checked as text, and on the emulator the
external table is stood in by a native table loaded from the same Parquet files (see
tests/bq_emulator.py); everything else the step does runs for real: the dataset check, the
manifest load, the count, the location of every job. A live section runs the real thing.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.auth
import google.cloud.storage as storage
import pyarrow.parquet as pq
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

import flows.gcp
from flows.errors import ConfigError, PipelineError
from flows.lake.gcs import GcsLake
from flows.lake.manifest import ManifestEntry
from flows.settings import Settings
from flows.sources.specs import SPD_CRIME
from flows.warehouse.bigquery import (
    MANIFEST_COLUMNS,
    external_table_ddl,
    rebuild_bigquery_staging,
)
from tests.bq_emulator import (
    PROJECT,
    BqEmulator,
    StandInClient,
    create_dataset,
    running_bq_emulator,
    write_lake,
)
from tests.socrata.data import generate_rows

LOCATION = "europe-west1"  # anything but the US default: a hard-coded US would show
LAKE_URL = "gs://crime-lake-test/lake"
MONTHS = ["2024-01", "2024-02", "2024-03"]


def gcs_lake(url: str = LAKE_URL) -> GcsLake:
    # a storage client that is never called: GcsLake only names things here
    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    return GcsLake(url, SPD_CRIME, client)


def settings(**changes: Any) -> Settings:
    return Settings(
        warehouse="bigquery",
        gcp_project=PROJECT,
        bq_location=LOCATION,
        staging_dataset="crime_staging",
        lake_url=LAKE_URL,
    ).with_overrides(**changes)


# --- the DDL -------------------------------------------------------------------------------


def test_external_table_ddl_has_every_option_from_a_gcs_lake_root() -> None:
    lake = gcs_lake()
    assert lake.root == "gs://crime-lake-test/lake/spd_crime"

    uris = [lake.url_of("2024-05"), lake.url_of("unknown")]
    ddl = external_table_ddl("my-crime-project", "crime_staging", SPD_CRIME, lake.root, uris)

    # exactly the month objects, never a wildcard wider than them
    assert ddl == (
        "CREATE OR REPLACE EXTERNAL TABLE `my-crime-project.crime_staging.spd_crime`\n"
        "WITH PARTITION COLUMNS (report_month STRING)\n"
        "OPTIONS (\n"
        "    format = 'PARQUET',\n"
        "    uris = [\n"
        "        'gs://crime-lake-test/lake/spd_crime/report_month=2024-05/data.parquet',\n"
        "        'gs://crime-lake-test/lake/spd_crime/report_month=unknown/data.parquet'\n"
        "    ],\n"
        "    hive_partition_uri_prefix = 'gs://crime-lake-test/lake/spd_crime',\n"
        "    require_hive_partition_filter = false\n"
        ")"
    )


def test_the_ddl_matches_the_lake_layout() -> None:
    lake = gcs_lake()
    uris = [lake.url_of("2024-05"), lake.url_of("unknown")]
    ddl = external_table_ddl("my-crime-project", "crime_staging", SPD_CRIME, lake.root, uris)
    prefix = lake.root
    # every month object is listed, its first folder a hive key right after the partition
    # prefix
    for month in ("2024-05", "unknown"):
        url = lake.url_of(month)
        assert url.startswith(prefix + "/")
        assert url[len(prefix) + 1 :].startswith(f"report_month={month}/")
    # the manifest is beside the dataset folder, and never listed
    manifest_url = f"gs://{lake.bucket_name}/{lake._manifest_prefix()}2024-05.json"
    assert not manifest_url.startswith(prefix + "/")
    assert manifest_url not in ddl
    assert f"uris = [\n        '{uris[0]}',\n        '{uris[1]}'\n    ]" in ddl


def test_a_lake_at_the_top_of_its_bucket() -> None:
    lake = gcs_lake("gs://crime-lake-test")
    ddl = external_table_ddl(
        "my-crime-project", "staging_eu", SPD_CRIME, lake.root, [lake.url_of("2024-05")]
    )
    assert "'gs://crime-lake-test/spd_crime/report_month=2024-05/data.parquet'\n    ]" in ddl
    assert "hive_partition_uri_prefix = 'gs://crime-lake-test/spd_crime'" in ddl
    assert "`my-crime-project.staging_eu.spd_crime`" in ddl


@pytest.mark.parametrize(
    ("project", "dataset", "root", "says"),
    [
        ("my-crime-project", "crime_staging", "/data/lake/spd_crime", "CRIME_LAKE_URL="),
        ("my-crime-project", "crime_staging", "gs://b/it's/spd_crime", "no quotes"),
        ("my-crime-project", "crime_staging", "gs://b/lake*/spd_crime", "wildcards"),
        ("My Crime Project", "crime_staging", "gs://b/lake/spd_crime", "CRIME_GCP_PROJECT="),
        ("p`; drop", "crime_staging", "gs://b/lake/spd_crime", "CRIME_GCP_PROJECT="),
        ("my-crime-project", "crime-staging", "gs://b/lake/spd_crime", "CRIME_STAGING_DATASET="),
    ],
)
def test_the_ddl_refuses_what_it_cannot_quote(
    project: str, dataset: str, root: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=r"^[^\n]*$") as raised:
        external_table_ddl(project, dataset, SPD_CRIME, root)
    assert says in str(raised.value)


# --- against the emulator ------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BqEmulator]:
    with running_bq_emulator(tmp_path_factory.mktemp("bqemulator")) as running:
        yield running


@pytest.fixture(scope="module")
def lake_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ManifestEntry]]:
    rows = generate_rows(MONTHS, rows_per_month=40, seed=7, null_report_rows=3)
    lake, entries = write_lake(tmp_path_factory.mktemp("lake"), rows)
    return Path(lake.root), entries


@pytest.fixture
def dataset() -> str:
    # one dataset per test: tests share the emulator, not their tables
    return f"staging_{uuid.uuid4().hex[:8]}"


def stand_in(emulator: BqEmulator, lake_dir: Path) -> StandInClient:
    return emulator.stand_in_client({gcs_lake().root: lake_dir}, location=LOCATION)


@pytest.mark.slow
def test_staging_on_the_emulator(
    emulator: BqEmulator, lake_files: tuple[Path, list[ManifestEntry]], dataset: str
) -> None:
    lake_dir, entries = lake_files
    client = stand_in(emulator, lake_dir)
    create_dataset(client, dataset, LOCATION)
    staged = settings(staging_dataset=dataset)

    rows = rebuild_bigquery_staging(client, staged, SPD_CRIME, gcs_lake().root, entries)

    lake_rows = sum(pq.read_metadata(p).num_rows for p in lake_dir.glob("*/*.parquet"))
    assert rows == lake_rows == 3 * 40 + 3
    # the statement sent for the staging table is exactly the external table's DDL, listing
    # the months the manifest records
    uris = [gcs_lake().url_of(entry.month) for entry in entries]
    assert client.external_ddls == [
        external_table_ddl(PROJECT, dataset, SPD_CRIME, gcs_lake().root, uris)
    ]
    # every job ran in the configured location, none in a default one
    jobs = client.recorder.jobs
    assert [job.kind for job in jobs] == ["load", "load", "query"]
    assert {job.location for job in jobs} == {LOCATION}
    assert jobs[1].statement == f"{PROJECT}.{dataset}.spd_crime_manifest"
    # the manifest table: its types, and one row per month as the lake recorded it
    table = client.get_table(f"{PROJECT}.{dataset}.spd_crime_manifest")
    # the API may answer INT64 with its legacy name, INTEGER
    legacy = {"INTEGER": "INT64"}
    schema = [(f.name, legacy.get(f.field_type, f.field_type)) for f in table.schema]
    assert schema == list(MANIFEST_COLUMNS)
    manifest = client.query(
        f"select * from `{PROJECT}.{dataset}.spd_crime_manifest` order by report_month"
    ).result()
    assert [tuple(row.values()) for row in manifest] == [
        (e.month, e.rows, e.fetched_at, e.source_updated_at) for e in entries
    ]
    # staging per month holds what the manifest says
    counts = client.query(
        f"select report_month, count(*) as row_count from `{PROJECT}.{dataset}.spd_crime` "
        "group by report_month order by report_month"
    ).result()
    assert {row[0]: row[1] for row in counts} == {e.month: e.rows for e in entries}


@pytest.mark.slow
def test_a_second_run_replaces_the_manifest(
    emulator: BqEmulator, lake_files: tuple[Path, list[ManifestEntry]], dataset: str
) -> None:
    lake_dir, entries = lake_files
    client = stand_in(emulator, lake_dir)
    create_dataset(client, dataset, LOCATION)
    staged = settings(staging_dataset=dataset)
    rebuild_bigquery_staging(client, staged, SPD_CRIME, gcs_lake().root, entries)

    refetched = [replace(e, fetched_at="2030-01-01T00:00:00+00:00") for e in entries[:2]]
    rows = rebuild_bigquery_staging(client, staged, SPD_CRIME, gcs_lake().root, refetched)

    assert rows == 3 * 40 + 3
    manifest = client.query(
        f"select report_month, fetched_at from `{PROJECT}.{dataset}.spd_crime_manifest` "
        "order by report_month"
    ).result()
    # WRITE_TRUNCATE: the table is this run's manifest, not an append to the last one
    assert [tuple(row.values()) for row in manifest] == [
        (e.month, "2030-01-01T00:00:00+00:00") for e in refetched
    ]


@pytest.mark.slow
def test_an_empty_manifest_still_has_its_columns(
    emulator: BqEmulator, lake_files: tuple[Path, list[ManifestEntry]], dataset: str
) -> None:
    lake_dir, entries = lake_files
    client = stand_in(emulator, lake_dir)
    create_dataset(client, dataset, LOCATION)

    # the lake's month files are staged, with a manifest that records none of them
    uris = [gcs_lake().url_of(entry.month) for entry in entries]
    rebuild_bigquery_staging(
        client, settings(staging_dataset=dataset), SPD_CRIME, gcs_lake().root, [], uris=uris
    )

    table = client.get_table(f"{PROJECT}.{dataset}.spd_crime_manifest")
    assert [f.name for f in table.schema] == [name for name, _ in MANIFEST_COLUMNS]
    assert table.num_rows == 0


@pytest.mark.slow
def test_a_missing_dataset_is_one_sentence(
    emulator: BqEmulator, lake_files: tuple[Path, list[ManifestEntry]], dataset: str
) -> None:
    lake_dir, entries = lake_files
    client = stand_in(emulator, lake_dir)

    with pytest.raises(PipelineError, match=r"^[^\n]*$") as raised:
        rebuild_bigquery_staging(
            client, settings(staging_dataset=dataset), SPD_CRIME, gcs_lake().root, entries
        )

    assert str(raised.value) == (
        f"The BigQuery dataset {PROJECT}.{dataset} does not exist: create it with "
        "`terraform apply` in terraform/, or set CRIME_STAGING_DATASET to an existing dataset."
    )
    # nothing was attempted before the check
    assert client.recorder.jobs == []


@pytest.mark.slow
def test_a_dataset_in_another_location_names_it(
    emulator: BqEmulator, lake_files: tuple[Path, list[ManifestEntry]], dataset: str
) -> None:
    lake_dir, entries = lake_files
    client = stand_in(emulator, lake_dir)
    create_dataset(client, dataset, "EU")

    with pytest.raises(ConfigError, match=r"^[^\n]*$") as raised:
        rebuild_bigquery_staging(
            client, settings(staging_dataset=dataset), SPD_CRIME, gcs_lake().root, entries
        )

    assert "is in location EU, not in CRIME_BQ_LOCATION=europe-west1" in str(raised.value)
    assert client.recorder.jobs == []


def test_an_empty_lake_says_to_load_a_month_first() -> None:
    client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials())
    with pytest.raises(PipelineError, match="load at least one month first"):
        rebuild_bigquery_staging(
            client, settings(), SPD_CRIME, gcs_lake().root, [], has_files=False
        )


def test_a_local_lake_cannot_be_staged_in_bigquery(tmp_path: Path) -> None:
    client = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials())
    with pytest.raises(ConfigError, match="set CRIME_LAKE_URL=gs://BUCKET/PREFIX"):
        rebuild_bigquery_staging(client, settings(), SPD_CRIME, str(tmp_path), [])


# --- errors BigQuery answers that the emulator does not --------------------------------------


class FakeBigQuery:
    """A stand-in for the BigQuery API on 127.0.0.1 answering every request with one error, in
    the shape BigQuery sends it (the emulator has no permissions and knows every project)."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        self.body = json.dumps(
            {
                "error": {
                    "code": status,
                    "message": message,
                    "errors": [{"message": message, "domain": "global", "reason": reason}],
                }
            }
        ).encode()
        self.status = status
        self.paths: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(0.05), daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeBigQuery:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                fake.paths.append(f"{self.command} {self.path}")
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


DENIED = (
    "Access Denied: Dataset my-crime-project:crime_staging: Permission bigquery.datasets.get "
    "denied on dataset my-crime-project:crime_staging (or it may not exist). "
    "Caller: pipeline@my-crime-project.iam.gserviceaccount.com"
)


@pytest.mark.parametrize(
    ("status", "message", "reason", "expected"),
    [
        (
            403,
            DENIED,
            "accessDenied",
            "The GCP credentials may not create tables or run jobs in BigQuery dataset "
            "my-crime-project.crime_staging: grant them roles/bigquery.dataEditor on it and "
            "roles/bigquery.jobUser on project my-crime-project (`terraform apply` does), or "
            "use the credentials block that has them.",
        ),
        (
            404,
            "Not found: Project my-crime-project",
            "notFound",
            "Google Cloud project 'my-crime-project' does not exist or is not visible to "
            "these credentials: set CRIME_GCP_PROJECT to the project's ID (not its name or "
            "number).",
        ),
        (
            403,
            "Billing has not been enabled for this project.",
            "billingNotEnabled",
            "Billing is not enabled on Google Cloud project 'my-crime-project', so BigQuery "
            "will not run jobs there: enable billing for it in the console, or set "
            "CRIME_GCP_PROJECT to a project with billing.",
        ),
    ],
)
def test_errors_a_user_can_act_on_are_one_sentence(
    status: int, message: str, reason: str, expected: str
) -> None:
    with FakeBigQuery(status, message, reason) as fake:
        client = bigquery.Client(
            project="my-crime-project",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=fake.url),
        )
        with pytest.raises(PipelineError) as raised:
            rebuild_bigquery_staging(
                client,
                settings(gcp_project="my-crime-project"),
                SPD_CRIME,
                gcs_lake().root,
                [],
            )
    assert str(raised.value) == expected
    # the service account in BigQuery's text never reaches the message
    assert "iam.gserviceaccount.com" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    # one request, the dataset check: no job was started
    paths = [path.split("?")[0] for path in fake.paths]
    assert paths == ["GET /bigquery/v2/projects/my-crime-project/datasets/crime_staging"]


# --- the production client -----------------------------------------------------------------


def test_the_client_comes_from_prefect_gcp_with_project_and_location(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_gcp import GcpCredentials

    # application default credentials, as a machine without a key file has them
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    asked: list[str] = []

    def load(block_name: str) -> GcpCredentials:
        asked.append(block_name)
        return GcpCredentials(project="block-project")

    monkeypatch.setattr(flows.gcp, "load_gcp_credentials", load)

    client = flows.gcp.bigquery_client(settings(gcp_project="my-crime-project"))
    assert (client.project, client.location) == ("my-crime-project", LOCATION)
    # without CRIME_GCP_PROJECT, the block's project
    client = flows.gcp.bigquery_client(settings(gcp_project=None))
    assert (client.project, client.location) == ("block-project", LOCATION)
    assert asked == [Settings().gcp_credentials_block] * 2


# --- live: real GCS and BigQuery ------------------------------------------------------------


@pytest.fixture
def live() -> Settings:
    """Settings for a real project, or a skip that says what to set."""
    needed = ("CRIME_LIVE_TESTS", "CRIME_GCP_PROJECT", "CRIME_LIVE_LAKE_URL")
    if os.environ.get("CRIME_LIVE_TESTS") != "1" or not all(os.environ.get(n) for n in needed):
        pytest.skip(
            "live: set CRIME_LIVE_TESTS=1, CRIME_GCP_PROJECT and CRIME_LIVE_LAKE_URL "
            "(gs://BUCKET/PREFIX, a scratch prefix) with credentials that Terraform's service "
            "account has, to run against real BigQuery"
        )
    from flows.settings import load_settings

    return load_settings().with_overrides(
        warehouse="bigquery", lake_url=os.environ["CRIME_LIVE_LAKE_URL"]
    )


@pytest.mark.live
def test_live_external_table_over_the_gcs_lake(live: Settings, tmp_path: Path) -> None:
    from flows.lake.gcs import open_gcs_lake

    lake = open_gcs_lake(live.lake_url, SPD_CRIME, live)
    rows = generate_rows(MONTHS, rows_per_month=20, seed=3, null_report_rows=2)
    local, entries = write_lake(tmp_path / "lake", rows)
    for entry in entries:
        lake.write_month(entry.month, local.read_month(entry.month))
        lake.write_manifest(entry.month, entry.to_json())

    client = flows.gcp.bigquery_client(live)
    try:
        staged = rebuild_bigquery_staging(
            client, live, SPD_CRIME, lake.root, entries, has_files=True
        )
        table = client.get_table(f"{client.project}.{live.staging_dataset}.spd_crime")
    finally:
        client.close()

    assert staged == len(rows)
    assert table.table_type == "EXTERNAL"
    types = {field.name: field.field_type for field in table.schema}
    assert types["report_month"] == "STRING"
    assert types["source_updated_at"] == "TIMESTAMP"
    # naive Arrow timestamps (Pacific wall-clock time): the models work with either type
    assert types["report_date_time"] in {"DATETIME", "TIMESTAMP"}
    print(f"live: report_date_time is {types['report_date_time']} in the external table")
