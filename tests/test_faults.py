"""Faults that never lose or duplicate a row: kills, a dead source, concurrent runs, secrets."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.lake.manifest import parse_entries
from tests.lakecheck import lake_fingerprint, lake_keys, source_keys, warehouse_keys
from tests.socrata import Faults, NetworkModel, SocrataServer, generate_rows
from tests.test_cli_errors import ROOT, last_line, run_cli

MONTHS = ["2023-09", "2023-10", "2023-11", "2023-12", "2024-01", "2024-02"]
ARGS = ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[-1]]


@pytest.fixture
def rows() -> list[dict]:
    return generate_rows(MONTHS, rows_per_month=1500, seed=21, null_report_rows=3)


def env_for(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    return {
        "CRIME_SOURCE_URL": url,
        "CRIME_LAKE_URL": str(tmp_path / "lake"),
        "CRIME_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "CRIME_PAGE_SIZE": "400",
        "CRIME_HTTP_BACKOFF": "0.01",
        **extra,
    }


def assert_lake_consistent(tmp_path: Path, rows: list[dict]) -> None:
    """Whatever a crash left: each month file is whole and exact, and no manifest claims more."""
    expected = source_keys(rows)
    lake = lake_keys(tmp_path / "lake")
    for month, keys in lake.items():
        assert sorted(keys) == sorted(expected[month]), f"{month} is partial or wrong"
    dataset = tmp_path / "lake" / "spd_crime"
    manifest_dir = tmp_path / "lake" / "_manifest" / "spd_crime"
    texts = {p.stem: p.read_text() for p in manifest_dir.glob("*.json")}
    for month, entry in parse_entries(texts).items():
        data = dataset / f"report_month={month}" / "data.parquet"
        assert data.exists(), f"manifest claims {month}, which the lake does not hold"
        assert pq.ParquetFile(data).metadata.num_rows == entry.rows


def assert_converged(tmp_path: Path, rows: list[dict]) -> int:
    expected = source_keys(rows)
    lake = lake_keys(tmp_path / "lake")
    warehouse = warehouse_keys(tmp_path / "warehouse.duckdb")
    assert sorted(lake) == sorted(expected)
    for month, keys in expected.items():
        assert sorted(lake[month]) == sorted(keys), month
        assert warehouse[month] == sorted(keys), month
    return sum(len(keys) for keys in lake.values())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_killed_at_a_random_point_is_finished_by_the_next(
    seed, rows, prefect_api_url, tmp_path
):
    network = NetworkModel(latency_s=0.15, bandwidth_bytes_per_s=2e6)
    with SocrataServer(rows, network=network) as server:
        env = env_for(tmp_path, server.url, PREFECT_API_URL=prefect_api_url)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRIME_")}
        full_env.update(env)
        victim = subprocess.Popen(
            [sys.executable, "-m", "flows", *ARGS],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # spread over the fetch, write, staging and dbt phases of a ~10-20 s run
        delay = random.Random(seed).uniform(1.0, 12.0)
        time.sleep(delay)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert_lake_consistent(tmp_path, rows)

        result = run_cli(ARGS, env, prefect_api_url)
        assert result.returncode == 0, last_line(result.stderr)
        assert assert_converged(tmp_path, rows) == len(rows)
    print(f"seed {seed}: killed after {delay:.1f}s, next run converged on {len(rows)} rows")


@pytest.mark.slow
def test_a_source_that_keeps_failing_fails_the_run_and_keeps_done_months(
    rows, prefect_api_url, tmp_path
):
    with SocrataServer(rows) as server:
        env = env_for(tmp_path, server.url, CRIME_HTTP_ATTEMPTS="3")
        first = run_cli(
            ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[2]], env, prefect_api_url
        )
        assert first.returncode == 0, last_line(first.stderr)
        before = lake_fingerprint(tmp_path / "lake")

        server.faults.fail_always = True
        server.faults.fault_paths = (".csv",)  # metadata and counts answer, data pages do not
        result = run_cli(ARGS, env, prefect_api_url)
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert "month(s) could not be loaded" in line
    assert "kept failing (answered HTTP 503) after 3 attempts" in line
    after = lake_fingerprint(tmp_path / "lake")
    assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.slow
def test_two_runs_started_at_once_never_write_the_same_month_concurrently(
    rows, prefect_api_url, tmp_path
):
    with SocrataServer(rows, network=NetworkModel(latency_s=0.05, bandwidth_bytes_per_s=5e6)) as s:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRIME_")}
        env.update(env_for(tmp_path, s.url, PREFECT_API_URL=prefect_api_url))
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "flows", *ARGS],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
        codes = sorted(code for code, _ in outcomes)
        assert codes == [0, 1], outcomes
        refused = next(err for code, err in outcomes if code == 1)
        assert last_line(refused).startswith("error: Another run is loading this lake")
        assert assert_converged(tmp_path, rows) == len(rows)


@pytest.mark.slow
def test_the_app_token_never_appears_in_output_lake_or_errors(rows, prefect_api_url, tmp_path):
    token = "tok-SECRET-4f9a0c"
    faults = Faults(throttle_every=5, error_every=7, retry_after="0")
    with SocrataServer(rows, faults=faults) as server:
        env = env_for(tmp_path, server.url, SOCRATA_APP_TOKEN=token)
        ok = run_cli(ARGS, env, prefect_api_url)
        server.rename_field("precinct", "precinct_name")
        broken = run_cli([*ARGS, "--force", MONTHS[0]], env, prefect_api_url)
        sent = {request.app_token for request in server.requests_log}
    assert ok.returncode == 0
    assert broken.returncode == 1
    assert sent == {token}  # every request carried it
    for output in (ok.stdout, ok.stderr, broken.stdout, broken.stderr):
        assert token not in output
    for path in (tmp_path / "lake").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token.encode() not in (tmp_path / "warehouse.duckdb").read_bytes()
