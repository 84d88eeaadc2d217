"""The GCS lake against a real GCS emulator: hive layout, guarded replaces, footer-only counts."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import google.auth
import google.cloud.storage as storage
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError

from flows.errors import ConfigError, PipelineError
from flows.lake.gcs import (
    FOOTER_READ_BYTES,
    GcsLake,
    encode_parquet,
    md5_base64,
    open_gcs_lake,
)
from flows.lake.locking import LakeBusyError
from flows.settings import Settings
from flows.sources.specs import SPD_CRIME
from tests.gcs_emulator import (
    GcsEmulator,
    LoggedRequest,
    PreconditionFailingGcs,
    RecordingSession,
    running_emulator,
)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """One emulator for the module; each test gets its own bucket in it."""
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
def client(emulator: GcsEmulator, session: RecordingSession) -> storage.Client:
    return emulator.client(http=session)


@pytest.fixture
def bucket(client: storage.Client) -> str:
    name = f"lake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(name)
    return name


@pytest.fixture
def lake(bucket: str, client: storage.Client, tmp_path: Path) -> GcsLake:
    return GcsLake(f"gs://{bucket}/lake", SPD_CRIME, client, lock_dir=str(tmp_path))


def crime_table(month: str, rows: int, seed: int = 1) -> pa.Table:
    """Rows in the lake's exact schema, with nulls in every column type."""
    rng = random.Random(seed)
    schema = SPD_CRIME.arrow_schema()
    start = datetime(2024, 1, 1) if month == "unknown" else datetime.fromisoformat(f"{month}-01")
    columns: dict[str, list[object]] = {}
    for column in schema:
        values: list[object] = []
        for i in range(rows):
            if i % 7 == 3:
                values.append(None)
            elif column.type == pa.float64():
                values.append(47.5 + rng.random())
            elif pa.types.is_timestamp(column.type):
                moment = start + timedelta(minutes=rng.randrange(40_000))
                values.append(moment.replace(tzinfo=UTC) if column.type.tz else moment)
            else:
                values.append(f"{column.name}-{rng.getrandbits(64):016x}")
        columns[column.name] = values
    if month == "unknown":
        columns["report_date_time"] = [None] * rows
    return pa.table(columns, schema=schema)


def bucket_requests(emulator: GcsEmulator, bucket: str) -> list[LoggedRequest]:
    return [r for r in emulator.requests() if f"/b/{bucket}/" in r.path or r.path.endswith(bucket)]


def upload_preconditions(emulator: GcsEmulator, bucket: str) -> list[str | None]:
    """The ifGenerationMatch of every upload the emulator received for the bucket, in order."""
    found = []
    for request in bucket_requests(emulator, bucket):
        if request.method == "POST" and request.path.startswith("/upload/"):
            query = parse_qs(urlsplit(request.path).query)
            found.append(query.get("ifGenerationMatch", [None])[0])
    return found


def object_names(client: storage.Client, bucket: str) -> list[str]:
    return sorted(blob.name for blob in client.list_blobs(bucket))


def test_months_lists_written_months_and_ignores_other_objects(
    lake: GcsLake, client: storage.Client, bucket: str, emulator: GcsEmulator
) -> None:
    for month in ("2024-04", "2024-05", "unknown"):
        lake.write_month(month, crime_table(month, 20))
    # objects the listing must not take for months
    for stray in (
        "lake/spd_crime/report_month=2024-06/other.parquet",
        "lake/spd_crime/report_month=2024-6/data.parquet",
        "lake/spd_crime/report_month=2024-07/data.parquet.tmp",
        "lake/spd_crime/report_month=2024-08/nested/data.parquet",
        "lake/spd_crime_old/report_month=2024-09/data.parquet",
        "lake/spd_crime/report_month=2024-10/",
    ):
        client.bucket(bucket).blob(stray).upload_from_string(b"not parquet")
    before = len(bucket_requests(emulator, bucket))

    assert lake.months() == {"2024-04", "2024-05", "unknown"}

    listing = bucket_requests(emulator, bucket)[before:]
    assert [(r.method, r.status) for r in listing] == [("GET", 200)]
    query = parse_qs(urlsplit(listing[0].path).query)
    assert listing[0].path.startswith(f"/storage/v1/b/{bucket}/o?")
    assert query["prefix"] == ["lake/spd_crime/report_month="]


def test_months_of_an_empty_lake_is_empty(lake: GcsLake) -> None:
    assert lake.months() == set()


def test_row_count_reads_only_the_footer(
    lake: GcsLake, client: storage.Client, bucket: str, session: RecordingSession
) -> None:
    table = crime_table("2024-05", 1500)
    lake.write_month("2024-05", table)
    size = client.bucket(bucket).get_blob("lake/spd_crime/report_month=2024-05/data.parquet").size
    assert size > 2 * FOOTER_READ_BYTES  # big enough that a whole download would show
    start = len(session.exchanges)

    assert lake.row_count("2024-05") == 1500

    downloads = [e for e in session.exchanges[start:] if "alt=media" in e.url]
    assert downloads, "the footer was not downloaded"
    assert all(e.status == 206 and e.range for e in downloads)
    fetched = sum(e.content_length or 0 for e in downloads)
    assert 0 < fetched <= FOOTER_READ_BYTES < size


def test_replacing_a_month_leaves_one_object_with_the_new_content(
    lake: GcsLake, client: storage.Client, bucket: str
) -> None:
    old, new = crime_table("2024-05", 40, seed=1), crime_table("2024-05", 25, seed=2)
    lake.write_month("2024-05", old)
    first = client.bucket(bucket).get_blob("lake/spd_crime/report_month=2024-05/data.parquet")

    written = lake.write_month("2024-05", new)

    assert written == f"gs://{bucket}/lake/spd_crime/report_month=2024-05/data.parquet"
    assert object_names(client, bucket) == ["lake/spd_crime/report_month=2024-05/data.parquet"]
    second = client.bucket(bucket).get_blob("lake/spd_crime/report_month=2024-05/data.parquet")
    assert second.generation != first.generation
    assert lake.row_count("2024-05") == 25
    assert lake.read_month("2024-05").equals(new)


def test_every_upload_sends_a_generation_precondition(
    lake: GcsLake, client: storage.Client, bucket: str, emulator: GcsEmulator
) -> None:
    name = "lake/spd_crime/report_month=2024-05/data.parquet"
    lake.write_month("2024-05", crime_table("2024-05", 10, seed=1))
    generation = client.bucket(bucket).get_blob(name).generation
    lake.write_month("2024-05", crime_table("2024-05", 12, seed=2))
    lake.write_month("unknown", crime_table("unknown", 5))

    # what the emulator received: 0 (must not exist) for a new month, the generation read at
    # the start of the write for a replace
    assert upload_preconditions(emulator, bucket) == ["0", str(generation), "0"]


def test_read_month_round_trips_the_exact_arrow_schema(lake: GcsLake) -> None:
    table = crime_table("2024-02", 30)

    lake.write_month("2024-02", table)

    result = lake.read_month("2024-02")

    assert result.schema.equals(SPD_CRIME.arrow_schema(), check_metadata=True)
    assert [(f.name, f.type) for f in result.schema] == [
        (f.name, f.type) for f in SPD_CRIME.arrow_schema()
    ]
    assert result.column("source_updated_at").type == pa.timestamp("us", tz="UTC")
    assert result.equals(table)


def test_the_lake_is_a_hive_layout_under_root(
    lake: GcsLake, client: storage.Client, bucket: str, emulator: GcsEmulator
) -> None:
    counts = {"2024-04": 11, "2024-05": 13, "unknown": 3}
    for month, rows in counts.items():
        lake.write_month(month, crime_table(month, rows))

    assert lake.root == f"gs://{bucket}/lake/spd_crime"
    assert object_names(client, bucket) == [
        "lake/spd_crime/report_month=2024-04/data.parquet",
        "lake/spd_crime/report_month=2024-05/data.parquet",
        "lake/spd_crime/report_month=unknown/data.parquet",
    ]
    # an engine that knows only the hive convention reads it back, as BigQuery will
    host = emulator.url.removeprefix("http://")
    gcs = pafs.GcsFileSystem(
        anonymous=True, endpoint_override=host, scheme="http", retry_time_limit=timedelta(seconds=5)
    )
    dataset = ds.dataset(
        lake.root.removeprefix("gs://"), filesystem=gcs, format="parquet", partitioning="hive"
    )
    table = dataset.to_table(columns=["report_month", "offense_id"])
    found: dict[str, int] = {}
    for month in table.column("report_month").to_pylist():
        found[month] = found.get(month, 0) + 1
    assert found == counts


@pytest.mark.parametrize(
    "url",
    [
        "gs://",
        "gs:///lake",
        "gs://gs://my-bucket/lake",
        "gs://my-bucket/gs://lake",
        "gs://My_Bucket/lake",
        "gs://my-bucket/a//b",
        "s3://my-bucket/lake",
    ],
)
def test_a_malformed_url_is_a_config_error(url: str) -> None:
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    with pytest.raises(ConfigError) as raised:
        GcsLake(url, SPD_CRIME, client)
    message = str(raised.value)
    assert repr(url) in message
    # one sentence: a single full stop, at the end
    assert message.endswith(".")
    assert ". " not in message
    assert "\n" not in message


def test_prefix_slashes_are_normalised(client: storage.Client) -> None:
    assert GcsLake("gs://my-bucket", SPD_CRIME, client).root == "gs://my-bucket/spd_crime"
    lake = GcsLake("gs://my-bucket/a/b/", SPD_CRIME, client)
    assert lake.root == "gs://my-bucket/a/b/spd_crime"
    assert lake.object_name("2024-05") == "a/b/spd_crime/report_month=2024-05/data.parquet"


def test_a_missing_bucket_is_one_clear_pipeline_error(
    client: storage.Client, tmp_path: Path
) -> None:
    lake = GcsLake("gs://no-such-bucket-here/lake", SPD_CRIME, client, lock_dir=str(tmp_path))
    calls = {
        "months": lake.months,
        "write_month": lambda: lake.write_month("2024-05", crime_table("2024-05", 3)),
        "row_count": lambda: lake.row_count("2024-05"),
        "read_month": lambda: lake.read_month("2024-05"),
    }
    for what, call in calls.items():
        with pytest.raises(PipelineError) as raised:
            call()
        message = str(raised.value)
        assert "'no-such-bucket-here' does not exist" in message, what
        assert "terraform apply" in message, what
        assert "CRIME_LAKE_URL" in message, what


def test_a_month_not_in_the_lake_is_a_pipeline_error(lake: GcsLake) -> None:
    with pytest.raises(PipelineError, match="month 2024-05 is not in the lake"):
        lake.row_count("2024-05")


def test_a_concurrent_replace_fails_loudly(tmp_path: Path) -> None:
    # the emulator ignores preconditions: this stand-in answers 412 the way GCS does
    competitor = {"name": "x", "bucket": "lake", "generation": "99", "md5Hash": "b3RoZXI="}
    with PreconditionFailingGcs(object_after_upload=competitor).running() as fake:
        lake = GcsLake("gs://lake/p", SPD_CRIME, fake.client(), lock_dir=str(tmp_path))
        with pytest.raises(PipelineError, match="replaced by another run") as raised:
            lake.write_month("2024-05", crime_table("2024-05", 5))
    assert "report_month=2024-05" in str(raised.value)
    uploads = [r for r in fake.requests if r.startswith("POST /upload/")]
    assert len(uploads) == 1
    assert "ifGenerationMatch=0" in uploads[0]


def test_a_retried_upload_that_had_landed_is_not_a_conflict(tmp_path: Path) -> None:
    table = crime_table("2024-05", 5)
    landed = {"name": "x", "bucket": "lake", "generation": "7"}
    landed["md5Hash"] = md5_base64(encode_parquet(table))
    with PreconditionFailingGcs(object_after_upload=landed).running() as fake:
        lake = GcsLake("gs://lake/p", SPD_CRIME, fake.client(), lock_dir=str(tmp_path))
        assert lake.write_month("2024-05", table).endswith("report_month=2024-05/data.parquet")


def test_lock_is_one_run_at_a_time_per_lake(client: storage.Client, tmp_path: Path) -> None:
    first = GcsLake("gs://my-bucket/lake", SPD_CRIME, client, lock_dir=str(tmp_path))
    same = GcsLake("gs://my-bucket/lake/", SPD_CRIME, client, lock_dir=str(tmp_path))
    other = GcsLake("gs://my-bucket/other", SPD_CRIME, client, lock_dir=str(tmp_path))
    with first.lock(0.0):
        with pytest.raises(LakeBusyError), same.lock(0.0):
            pass
        with other.lock(0.0):
            pass


@pytest.fixture
def adc(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Application default credentials that are anonymous, as the emulator wants."""
    monkeypatch.setattr(
        google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), "adc-project")
    )
    no_bucket_block(monkeypatch)
    return monkeypatch


def no_bucket_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GcsBucket block saved (these tests run without a Prefect API)."""
    from prefect_gcp.cloud_storage import GcsBucket

    monkeypatch.setattr(GcsBucket, "load", no_block)


def no_block(name: str) -> None:
    from prefect.exceptions import ObjectNotFound

    # what GcpCredentials.load raises for a name the Prefect API does not know
    raise ValueError(f"Unable to find block document named {name}") from ObjectNotFound(
        Exception(name)
    )


def test_open_gcs_lake_uses_the_saved_credentials_block(
    emulator: GcsEmulator, bucket: str, adc: pytest.MonkeyPatch
) -> None:
    from prefect_gcp import GcpCredentials

    loaded: list[str] = []

    def load(name: str) -> GcpCredentials:
        loaded.append(name)
        return GcpCredentials(project="block-project")

    adc.setattr(GcpCredentials, "load", load)
    settings = Settings(gcp_credentials_block="my-block")

    lake = open_gcs_lake(f"gs://{bucket}/lake", SPD_CRIME, settings)

    assert loaded == ["my-block"]
    assert lake.client.project == "block-project"
    # the production client found the emulator through STORAGE_EMULATOR_HOST alone
    lake.write_month("2024-05", crime_table("2024-05", 4))
    assert lake.months() == {"2024-05"}
    assert lake.row_count("2024-05") == 4


def test_open_gcs_lake_falls_back_to_application_default_credentials(
    emulator: GcsEmulator, bucket: str, adc: pytest.MonkeyPatch
) -> None:
    from prefect_gcp import GcpCredentials

    adc.setattr(GcpCredentials, "load", no_block)
    settings = Settings(gcp_project="settings-project")

    lake = open_gcs_lake(f"gs://{bucket}/lake", SPD_CRIME, settings)

    assert lake.client.project == "settings-project"
    assert lake.months() == set()


def test_open_gcs_lake_with_no_credentials_anywhere_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_gcp import GcpCredentials

    def no_adc(*args: object, **kwargs: object) -> None:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(GcpCredentials, "load", no_block)
    no_bucket_block(monkeypatch)
    monkeypatch.setattr(google.auth, "default", no_adc)

    with pytest.raises(ConfigError, match="GcpCredentials block 'seattle-crime-gcp'"):
        open_gcs_lake("gs://my-bucket/lake", SPD_CRIME, Settings())


def test_open_gcs_lake_checks_the_url_before_any_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_gcp import GcpCredentials

    def must_not_load(name: str) -> None:
        raise AssertionError("credentials were looked up for a malformed URL")

    monkeypatch.setattr(GcpCredentials, "load", must_not_load)
    with pytest.raises(ConfigError, match="names no bucket"):
        open_gcs_lake("gs://", SPD_CRIME, Settings())
