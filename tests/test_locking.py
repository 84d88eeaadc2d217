"""One run at a time per lake, and a crashed holder never leaves the lake locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.lake.local import LocalLake
from flows.lake.locking import LakeBusyError, file_lock
from flows.sources.specs import SPD_CRIME
from tests.lakecheck import lake_fingerprint
from tests.socrata import SocrataServer, generate_rows
from tests.test_cli_errors import last_line, run_cli


def test_second_holder_is_refused_with_the_holders_identity(tmp_path):
    lake = LocalLake(str(tmp_path), SPD_CRIME)
    with (
        lake.lock(0),
        pytest.raises(LakeBusyError, match=rf"pid {os.getpid()} on .* since "),
        lake.lock(0),
    ):
        pass
    with lake.lock(0):  # released on exit
        pass


def hold_lock_in_another_process(path: str, seconds: float) -> subprocess.Popen:
    """A second process that takes the lock, says so, and keeps it for `seconds`."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from flows.lake.locking import file_lock\n"
            f"with file_lock({path!r}): print('held', flush=True); time.sleep({seconds})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_waiting_holder_gets_the_lock_when_it_is_released(tmp_path):
    path = str(tmp_path / "x.lock")
    holder = hold_lock_in_another_process(path, 1.5)
    started = time.monotonic()
    with file_lock(path, wait_s=30, poll_s=0.1):
        waited = time.monotonic() - started
    holder.wait(timeout=10)
    assert waited > 0.5


def test_a_killed_holder_releases_the_lock(tmp_path):
    path = str(tmp_path / "x.lock")
    holder = hold_lock_in_another_process(path, 600)
    with pytest.raises(LakeBusyError), file_lock(path):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    with file_lock(path):
        pass


@pytest.mark.slow
def test_cli_run_is_refused_while_another_run_holds_the_lake(prefect_api_url, tmp_path: Path):
    lake_dir = tmp_path / "lake"
    (lake_dir / "spd_crime" / "report_month=2024-01").mkdir(parents=True)
    (lake_dir / "spd_crime" / "report_month=2024-01" / "data.parquet").write_bytes(b"earlier")
    with SocrataServer(generate_rows(["2024-01"], 10, seed=3)) as server:
        env = {
            "CRIME_SOURCE_URL": server.url,
            "CRIME_LAKE_URL": str(lake_dir),
            "CRIME_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        }
        with LocalLake(str(lake_dir), SPD_CRIME).lock(0):
            before = lake_fingerprint(lake_dir)
            result = run_cli(
                ["run", "--start-month", "2024-01", "--end-month", "2024-02"], env, prefect_api_url
            )
            after = lake_fingerprint(lake_dir)
    assert result.returncode == 1
    assert last_line(result.stderr).startswith("error: Another run is loading this lake (pid ")
    assert after == before
