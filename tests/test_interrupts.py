"""Runs stopped by SIGINT, SIGTERM or Ctrl-C to the terminal's process group: nothing is written
once the lake lock is free, a second run started at once finishes the job, the run exits within
seconds with 130 or 143, and Prefect's temporary API server never outlives it."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.lakecheck import lake_fingerprint
from tests.socrata import NetworkModel, SocrataServer, generate_rows
from tests.test_cli_errors import ROOT, last_line, run_cli
from tests.test_faults import assert_converged, assert_lake_consistent, env_for

MONTHS = ["2023-09", "2023-10", "2023-11", "2023-12", "2024-01", "2024-02"]
ARGS = ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[-1]]


@pytest.fixture
def rows() -> list[dict]:
    return generate_rows(MONTHS, rows_per_month=1500, seed=33, null_report_rows=3)


def start_run(env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    """A CLI run in a process group of its own (as a terminal's foreground job), its output
    collected line by line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIME_", "SOCRATA_"))}
    full_env.pop("PREFECT_API_URL", None)  # its own temporary API server, as a new user has
    full_env.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "flows", *ARGS],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(iter(process.stdout.readline, ""))

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def closing_line(output: list[str]) -> str:
    """The CLI's last line of its own (Prefect logs the temporary server's stop after it)."""
    return [line for line in output if "Stopping temporary server" not in line][-1].strip()


def wait_for(condition, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def still_running(processes: list[psutil.Process]) -> list[int]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def send(process: subprocess.Popen, how: str) -> None:
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # what a terminal does: the whole group
    elif how == "sigint":
        os.kill(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "seed", "code", "word"),
    [
        ("ctrl-c", 1, 130, "interrupted"),
        ("sigterm", 2, 143, "terminated"),
        ("sigint", 3, 130, "interrupted"),
    ],
)
def test_a_stopped_run_writes_nothing_once_the_lock_is_free_and_the_next_run_finishes(
    how, seed, code, word, rows, prefect_api_url, tmp_path
):
    network = NetworkModel(latency_s=0.3, bandwidth_bytes_per_s=1e6)
    with SocrataServer(rows, network=network) as server:
        env = env_for(tmp_path, server.url, CRIME_CONCURRENCY="2")
        victim, output = start_run(env)
        lake = tmp_path / "lake" / "spd_crime"
        wait_for(lambda: any(lake.glob("*/data.parquet")))
        helpers = descendants(victim.pid)
        assert helpers, "the run started no temporary API server"
        # anywhere from the first written month to dbt
        time.sleep(random.Random(seed).uniform(0.0, 3.0))
        signalled = time.monotonic()
        send(victim, how)
        # a second run right away: it waits for the lock, then loads what is left
        second = subprocess.Popen(
            [sys.executable, "-m", "flows", *ARGS],
            cwd=ROOT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("CRIME_")},
                **env,
                "CRIME_LOCK_WAIT": "120",
                "PREFECT_API_URL": prefect_api_url,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        victim.wait(timeout=120)
        stopped_after = time.monotonic() - signalled
        _, second_err = second.communicate(timeout=300)
        finished = lake_fingerprint(tmp_path / "lake")
        time.sleep(3)  # an orphaned month task would write now
        assert lake_fingerprint(tmp_path / "lake") == finished
    print(f"{how}: exited {victim.returncode} {stopped_after:.1f}s after the signal")
    assert victim.returncode == code, "".join(output[-20:])
    assert closing_line(output).startswith(f"{word}: ")
    assert stopped_after < 30, f"the run took {stopped_after:.1f}s to stop"
    assert still_running(helpers) == [], "Prefect's temporary API server outlived the run"
    assert second.returncode == 0, last_line(second_err)
    assert_lake_consistent(tmp_path, rows)
    assert assert_converged(tmp_path, rows) == len(rows)


@pytest.mark.slow
@pytest.mark.parametrize(("how", "code"), [("sigterm", 143), ("ctrl-c", 130)])
def test_a_run_stopped_during_dbt_keeps_the_last_good_warehouse(
    how, code, rows, prefect_api_url, tmp_path
):
    with SocrataServer(rows) as server:
        env = env_for(tmp_path, server.url)
        first = run_cli(ARGS, env, prefect_api_url)
        assert first.returncode == 0, last_line(first.stderr)
        warehouse = tmp_path / "warehouse.duckdb"
        before = hashlib.sha256(warehouse.read_bytes()).hexdigest()

        # the refresh window makes the run fetch two months again and build, then stop in dbt
        victim, output = start_run({**env, "CRIME_REFRESH_MONTHS": "2"})
        wait_for(lambda: any(" dbt: " in line for line in output))
        send(victim, how)
        victim.wait(timeout=120)
    assert victim.returncode == code, "".join(output[-20:])
    line = closing_line(output)
    assert line.startswith(("interrupted: ", "terminated: ")), line
    assert "dbt build could not run" not in "".join(output)
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before
    assert not list(tmp_path.glob(".warehouse.duckdb.build/*.wal"))
