"""The parent flow end to end with the lake on GCS (the gcp-storage-emulator on loopback).

The same code path as production: open_lake -> open_gcs_lake -> prefect-gcp credentials ->
google-cloud-storage. Only the endpoint (STORAGE_EMULATOR_HOST) and the credentials (anonymous,
in place of application default credentials) differ.
"""

from __future__ import annotations

import io

import google.auth
import pyarrow.parquet as pq
import pytest
from google.auth.credentials import AnonymousCredentials

from flows.flow import parent_process_data
from tests.gcs_emulator import running_emulator
from tests.lakecheck import source_keys
from tests.socrata import Faults, SocrataServer, generate_rows

MONTHS = ["2024-01", "2024-02", "2024-03"]
BUCKET = "crime-lake"


@pytest.fixture
def gcs(tmp_path, clean_env, monkeypatch):
    (tmp_path / "gcs").mkdir()
    with running_emulator(tmp_path / "gcs") as emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setattr(
            google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "test")
        )
        emulator.client().create_bucket(BUCKET)
        yield emulator


def lake_objects(client) -> dict[str, list[str]]:
    keys = {}
    for blob in client.list_blobs(BUCKET, prefix="lake/spd_crime/"):
        month = blob.name.split("report_month=")[1].split("/")[0]
        table = pq.read_table(io.BytesIO(blob.download_as_bytes()), columns=["offense_id"])
        keys[month] = table.column(0).to_pylist()
    return keys


@pytest.mark.slow
def test_backfill_into_gcs_is_exact_idempotent_and_replaces_months_whole(
    prefect_api_url, gcs, clean_env
):
    rows = generate_rows(MONTHS, rows_per_month=250, seed=8, null_report_rows=2)
    faults = Faults(throttle_every=6, drop_every=9, retry_after="0")
    with SocrataServer(rows, faults=faults) as server:
        clean_env.setenv("CRIME_SOURCE_URL", server.url)
        clean_env.setenv("CRIME_LAKE_URL", f"gs://{BUCKET}/lake")
        clean_env.setenv("CRIME_WAREHOUSE", "none")
        clean_env.setenv("CRIME_PAGE_SIZE", "100")
        clean_env.setenv("CRIME_HTTP_BACKOFF", "0.01")
        clean_env.setenv("CRIME_HTTP_ATTEMPTS", "8")
        client = gcs.client()

        first = parent_process_data(start_month=MONTHS[0], end_month=MONTHS[-1])
        expected = source_keys(rows)
        lake = lake_objects(client)
        assert sorted(lake) == sorted(expected)
        for month, keys in expected.items():
            assert sorted(lake[month]) == sorted(keys), month
        assert first["rows_loaded"] == len(rows)
        names = sorted(b.name for b in client.list_blobs(BUCKET))
        assert names == sorted(
            [f"lake/spd_crime/report_month={m}/data.parquet" for m in expected]
            + [f"lake/_manifest/spd_crime/{m}.json" for m in expected]
        )

        generations = {b.name: b.generation for b in client.list_blobs(BUCKET)}
        server.faults.reset()
        again = parent_process_data(start_month=MONTHS[0], end_month=MONTHS[-1])
        assert again["months"] == []
        assert {b.name: b.generation for b in client.list_blobs(BUCKET)} == generations

        # a revised month is replaced whole: one object, the new rows, no leftovers
        current = server.rows
        feb = [r for r in current if (r["report_date_time"] or "").startswith("2024-02")]
        server.set_rows([r for r in current if r[":id"] != feb[0][":id"]])
        third = parent_process_data(start_month=MONTHS[0], end_month=MONTHS[-1])
        assert [m["month"] for m in third["months"]] == ["2024-02"]
        lake = lake_objects(client)
        assert sorted(lake["2024-02"]) == sorted(source_keys(server.rows)["2024-02"])
        assert len(list(client.list_blobs(BUCKET))) == len(names)
