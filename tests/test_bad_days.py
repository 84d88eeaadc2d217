"""Bad days, each one sentence and a non-zero exit with nothing loaded damaged: a dbt test that
fails, a warehouse file another process holds, a full or read-only lake disk, and odd input."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.lakecheck import lake_fingerprint, lake_keys, source_keys, warehouse_keys
from tests.socrata import SocrataServer, generate_rows
from tests.socrata.data import month_of
from tests.test_cli_errors import ROOT, last_line, run_cli
from tests.test_faults import env_for

MONTHS = ["2024-01", "2024-02", "2024-03"]
FIRST = ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[1]]
ALL = ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[-1]]


@pytest.fixture
def server() -> Iterator[SocrataServer]:
    rows = generate_rows(MONTHS, rows_per_month=400, seed=5, null_report_rows=2)
    with SocrataServer(rows) as srv:
        srv.start()
        yield srv


def one_error_line(stderr: str) -> str:
    line = last_line(stderr)
    assert line.startswith("error: "), stderr[-2000:]
    assert "Traceback" not in line
    return line


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_failing_dbt_test_leaves_the_warehouse_users_read_as_it_was(
    server, prefect_api_url, tmp_path
):
    env = env_for(tmp_path, server.url)
    assert run_cli(FIRST, env, prefect_api_url).returncode == 0
    warehouse = tmp_path / "warehouse.duckdb"
    before = sha(warehouse)
    built = warehouse_keys(warehouse)

    # the same project with one more data test on the fact table, which fails
    project = tmp_path / "dbt"
    shutil.copytree(ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "tests" / "assert_fails_on_purpose.sql").write_text(
        "select offense_id from {{ ref('fct_crimes') }} where offense_id is not null\n"
    )
    failed = run_cli(ALL, {**env, "CRIME_DBT_PROJECT_DIR": str(project)}, prefect_api_url)

    assert failed.returncode == 1
    line = one_error_line(failed.stderr)
    assert "assert_fails_on_purpose" in line
    assert f"{warehouse} keeps its last good build" in line
    assert "nothing in the lake changed" not in line
    # the month was loaded into the lake, and the warehouse is byte for byte the last good one
    assert sorted(lake_keys(tmp_path / "lake")) == sorted(source_keys(server.rows))
    assert sha(warehouse) == before
    assert warehouse_keys(warehouse) == built
    # the next run with the real project builds it
    assert run_cli(ALL, env, prefect_api_url).returncode == 0
    expected = source_keys(server.rows)
    assert {m: sorted(k) for m, k in expected.items()} == warehouse_keys(warehouse)


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("held", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_warehouse_file_held_by_another_process_is_one_sentence_naming_it(
    mode, server, prefect_api_url, tmp_path
):
    env = env_for(tmp_path, server.url)
    assert run_cli(FIRST, env, prefect_api_url).returncode == 0
    warehouse = tmp_path / "warehouse.duckdb"
    before = sha(warehouse)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        result = run_cli(ALL, env, prefect_api_url)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"The DuckDB file {warehouse} is open in another process (PID {holder.pid}" in line
    assert "read-only readers" in line
    assert sha(warehouse) == before
    # once it is closed, the next run builds it
    assert run_cli(ALL, env, prefect_api_url).returncode == 0
    assert sorted(warehouse_keys(warehouse)) == sorted(source_keys(server.rows))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a lake disk that fills up. Needs root (CI and this machine have it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.strip()}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_lake_disk_is_one_sentence_and_written_months_stay_whole(
    small_disk, prefect_api_url, tmp_path
):
    months = ["2023-01", "2023-02", "2023-03", "2023-04", "2023-05", "2023-06"]
    rows = generate_rows(months, rows_per_month=1500, seed=8)
    with SocrataServer(rows) as srv:
        srv.start()
        env = {**env_for(tmp_path, srv.url), "CRIME_LAKE_URL": str(small_disk / "lake")}
        result = run_cli(["run", "--start-month", months[0], "--end-month", months[-1]], env)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"The lake at {small_disk / 'lake' / 'spd_crime'} is out of disk space" in line
    # whatever was written is whole: every month file holds exactly the source's rows
    expected = source_keys(rows)
    written = lake_keys(small_disk / "lake")
    assert len(written) < len(months)
    for month, keys in written.items():
        assert sorted(keys) == sorted(expected[month]), month
    assert not list(small_disk.rglob("*.tmp"))


@pytest.mark.slow
def test_a_read_only_lake_is_one_sentence(server, small_disk, prefect_api_url, tmp_path):
    env = {**env_for(tmp_path, server.url), "CRIME_LAKE_URL": str(small_disk / "lake")}
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = run_cli(FIRST, env, prefect_api_url)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "cannot be written (Read-only file system)" in line


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRIME_HTTP_TIMEOUT": "0"}, "CRIME_HTTP_TIMEOUT=0 would give every request no time"),
        ({"CRIME_HTTP_TIMEOUT": "nan"}, "CRIME_HTTP_TIMEOUT=nan is not a finite number"),
        ({"CRIME_LOCK_WAIT": "nan"}, "CRIME_LOCK_WAIT=nan is not a finite number"),
        ({"CRIME_STAGING_DATASET": "s; drop table x"}, "is not a schema or dataset name"),
        ({"CRIME_BQ_DATASET": "marts`x"}, "is not a schema or dataset name"),
        ({"CRIME_WAREHOUSE": "none", "CRIME_LAKE_URL": "gs://"}, "names no bucket"),
    ],
)
def test_odd_settings_exit_2_with_one_sentence(env, message, tmp_path):
    result = run_cli(FIRST, {"CRIME_LAKE_URL": str(tmp_path / "lake"), **env})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "lake").exists()
    assert not Path(ROOT, "gs:").exists()


def test_a_folder_as_the_duckdb_file_is_one_sentence(tmp_path):
    result = run_cli(FIRST, {"CRIME_DUCKDB_PATH": str(tmp_path)})
    assert result.returncode == 2
    assert f"CRIME_DUCKDB_PATH='{tmp_path}' is a folder" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--force", "\uff12\uff10\uff12\uff14-01"], "is not a valid month"),
        (["--start-month", "\u0662\u0660\u0662\u0664-01"], "is not a valid month"),
        (["--refresh-months", "700"], "The flow refused its parameters (refresh_months"),
    ],
)
def test_odd_parameters_exit_2_with_one_sentence(args, message, server, tmp_path):
    env = env_for(tmp_path, server.url)
    result = run_cli(["run", "--start-month", MONTHS[0], "--end-month", MONTHS[0], *args], env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert last_line(result.stderr).startswith("error: ")
    assert message in last_line(result.stderr)
    assert not (tmp_path / "lake").exists()


@pytest.mark.slow
def test_padded_months_load_and_a_forced_month_the_source_lacks_is_nothing(
    server, prefect_api_url, tmp_path
):
    env = {**env_for(tmp_path, server.url), "CRIME_RUN_DBT": "false"}
    padded = run_cli(
        ["run", "--start-month", f" {MONTHS[0]} ", "--end-month", f"{MONTHS[0]} "],
        env,
        prefect_api_url,
    )
    assert padded.returncode == 0, last_line(padded.stderr)
    before = lake_fingerprint(tmp_path / "lake")
    forced = run_cli([*FIRST[:3], "--end-month", MONTHS[0], "--force", "1999-01"], env)
    assert forced.returncode == 0, last_line(forced.stderr)
    assert not (tmp_path / "lake" / "spd_crime" / "report_month=1999-01").exists()
    assert lake_fingerprint(tmp_path / "lake") == before
    loaded = {month_of(r) for r in server.rows if month_of(r) == MONTHS[0]}
    assert set(lake_keys(tmp_path / "lake")) >= loaded


def test_status_prints_its_totals_once(tmp_path):
    folder = tmp_path / "lake" / "spd_crime" / "report_month=2024-01"
    folder.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"copy (select '1' as offense_id) to '{folder / 'data.parquet'}' (format parquet)")
    result = run_cli(
        ["status", "--start-month", "2024-01", "--end-month", "2024-01"],
        {"CRIME_LAKE_URL": str(tmp_path / "lake")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("1 partition(s), 1 rows") == 1
    assert os.path.exists(folder / "data.parquet")


def test_status_names_an_unreadable_month_instead_of_failing(tmp_path):
    folder = tmp_path / "lake" / "spd_crime" / "report_month=2024-01"
    folder.mkdir(parents=True)
    (folder / "data.parquet").write_bytes(b"PAR1 cut short")
    result = run_cli(
        ["status", "--start-month", "2024-01", "--end-month", "2024-01"],
        {"CRIME_LAKE_URL": str(tmp_path / "lake")},
    )
    assert result.returncode == 0, result.stderr
    assert "2024-01  unreadable (" in result.stdout
    assert "the next run fetches it again" in result.stdout


def test_staging_over_a_file_damaged_since_the_check_is_one_sentence(tmp_path):
    from flows.errors import PipelineError
    from flows.sources.specs import SPD_CRIME
    from flows.warehouse.duckdb import rebuild_duckdb_staging

    month = tmp_path / "spd_crime" / "report_month=2024-01"
    month.mkdir(parents=True)
    (month / "data.parquet").write_bytes(b"not parquet")
    with pytest.raises(PipelineError, match=r"^DuckDB could not read the lake's month files"):
        rebuild_duckdb_staging(
            str(tmp_path / "w.duckdb"),
            SPD_CRIME,
            str(tmp_path / "spd_crime"),
            "crime_staging",
            [str(month / "data.parquet")],
            [],
        )
