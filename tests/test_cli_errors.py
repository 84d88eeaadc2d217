"""What a user sees for each mistake: one `error:` line, a non-zero exit, and an untouched lake."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lakecheck import lake_fingerprint
from tests.socrata import SocrataServer, generate_rows

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], env: dict[str, str], api_url: str | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIME_", "SOCRATA_"))}
    full_env.update(env)
    if api_url:
        full_env["PREFECT_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.fixture
def seeded_lake(tmp_path: Path) -> dict[str, str]:
    lake = tmp_path / "lake" / "spd_crime" / "report_month=2024-01"
    lake.mkdir(parents=True)
    (lake / "data.parquet").write_bytes(b"stand-in for an earlier load")
    return {
        "CRIME_LAKE_URL": str(tmp_path / "lake"),
        "CRIME_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "CRIME_HTTP_BACKOFF": "0.01",
        "CRIME_HTTP_ATTEMPTS": "2",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start-month", "2024-13"], "start_month '2024-13' is not a valid month"),
        (["--start-month", "24-05"], "start_month '24-05' is not a valid month"),
        (["--start-month", "2024-05", "--end-month", "2024-01"], "is after end_month 2024-01"),
        (["--force", "2024-5"], "force month '2024-5' is not a valid month"),
    ],
)
def test_bad_parameters_exit_2_with_one_sentence(args, message, seeded_lake, tmp_path):
    before = lake_fingerprint(tmp_path / "lake")
    result = run_cli(["run", *args], seeded_lake)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert lake_fingerprint(tmp_path / "lake") == before
    assert not (tmp_path / "warehouse.duckdb").exists()


@pytest.mark.slow
def test_wrong_dataset_id_names_the_setting(prefect_api_url, seeded_lake, tmp_path):
    before = lake_fingerprint(tmp_path / "lake")
    with SocrataServer(generate_rows(["2024-01"], 10, seed=1)) as server:
        url = server.start()
        env = {**seeded_lake, "CRIME_SOURCE_URL": url, "CRIME_DATASET_ID": "abcd-1234"}
        result = run_cli(
            ["run", "--start-month", "2024-01", "--end-month", "2024-02"], env, prefect_api_url
        )
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert line.startswith("error: The source has no dataset at ")
    assert "check CRIME_DATASET_ID" in line
    assert lake_fingerprint(tmp_path / "lake") == before


@pytest.mark.slow
def test_unreachable_source_is_one_line_after_bounded_retries(
    prefect_api_url, seeded_lake, tmp_path
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    before = lake_fingerprint(tmp_path / "lake")
    env = {**seeded_lake, "CRIME_SOURCE_URL": f"http://127.0.0.1:{closed_port}"}
    result = run_cli(
        ["run", "--start-month", "2024-01", "--end-month", "2024-02"], env, prefect_api_url
    )
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert line.startswith(f"error: The source at http://127.0.0.1:{closed_port} kept failing")
    assert "after 2 attempts" in line
    assert lake_fingerprint(tmp_path / "lake") == before


def test_status_lists_months_and_what_is_missing(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for month, rows in (("2024-01", 3), ("2024-03", 2)):
        folder = tmp_path / "lake" / "spd_crime" / f"report_month={month}"
        folder.mkdir(parents=True)
        pq.write_table(
            pa.table({"offense_id": [str(i) for i in range(rows)]}), folder / "data.parquet"
        )
    env = {"CRIME_LAKE_URL": str(tmp_path / "lake")}
    result = run_cli(["status", "--start-month", "2024-01", "--end-month", "2024-04"], env)
    assert result.returncode == 0, result.stderr
    assert "2024-01         3 rows" in result.stdout
    assert "2024-03         2 rows" in result.stdout
    assert "2 partition(s), 5 rows" in result.stdout
    assert "missing 2 month(s) from 2024-01 to 2024-04: 2024-02, 2024-04" in result.stdout
