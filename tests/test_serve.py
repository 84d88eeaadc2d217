"""The monthly deployment, served by `python -m flows serve` against a real `prefect server`."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.lakecheck import lake_keys, source_keys
from tests.prefect_server import PrefectServer, prefect_env, stop
from tests.socrata import SocrataServer, generate_rows

ROOT = Path(__file__).resolve().parent.parent
PACIFIC = ZoneInfo("America/Los_Angeles")
DEPLOYMENT = "parent_process_data/monthly"
MONTHS = ["2024-01", "2024-02", "2024-03"]


@pytest.fixture(scope="module")
def source():
    rows = generate_rows(MONTHS, rows_per_month=200, seed=5)
    with SocrataServer(rows) as server:
        yield server, rows


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(prefect_server, source, tmp_path_factory):
    """`python -m flows serve` in a subprocess until the module's tests are done."""
    work = tmp_path_factory.mktemp("served")
    env = prefect_env(work / "prefect-home", prefect_server.api_url)
    env.update(
        {
            "CRIME_SOURCE_URL": source[0].url,
            "CRIME_LAKE_URL": str(work / "lake"),
            "CRIME_DUCKDB_PATH": str(work / "warehouse.duckdb"),
            "CRIME_START_MONTH": MONTHS[0],
            "CRIME_REFRESH_MONTHS": "0",
            "CRIME_HTTP_BACKOFF": "0.01",
        }
    )
    log = open(work / "serve.log", "wb")  # noqa: SIM115 (the subprocess writes to it)
    process = subprocess.Popen(
        [sys.executable, "-m", "flows", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deployment = wait_for(
        lambda: prefect_server.api("GET", f"/deployments/name/{DEPLOYMENT}"),
        lambda resp: resp.status_code == 200,
        timeout=120,
        what=f"deployment {DEPLOYMENT} (serve log: {work / 'serve.log'})",
    ).json()
    yield deployment, work
    stop(process)


def wait_for(fetch, done, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = fetch()
        if done(result):
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_dates(prefect_server, deployment_id: str) -> list[datetime]:
    resp = prefect_server.api(
        "POST",
        "/flow_runs/filter",
        json={
            "deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC",
        },
    )
    resp.raise_for_status()
    return [datetime.fromisoformat(run["expected_start_time"]) for run in resp.json()]


@pytest.mark.slow
def test_deployment_is_scheduled_monthly_at_8am_pacific(prefect_server, served):
    deployment, _ = served
    [schedule] = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "0 8 1 * *"
    assert schedule["schedule"]["timezone"] == "America/Los_Angeles"
    assert schedule["active"] is True
    assert deployment["paused"] is False
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment["enforce_parameter_schema"] is True

    upcoming = wait_for(
        lambda: run_dates(prefect_server, deployment["id"]),
        lambda dates: len(dates) >= 3,
        timeout=60,
        what="three scheduled runs",
    )
    for when in upcoming[:3]:
        local = when.astimezone(PACIFIC)
        assert (local.day, local.hour, local.minute) == (1, 8, 0), local
    print("next scheduled runs:", [d.astimezone(PACIFIC).isoformat() for d in upcoming[:3]])

    # one date in winter and one in summer from the stored schedule: 8 am Pacific both times
    from prefect.server.schemas.schedules import CronSchedule

    cron = CronSchedule(
        cron=schedule["schedule"]["cron"], timezone=schedule["schedule"]["timezone"]
    )
    winter, summer = (
        asyncio.run(cron.get_dates(1, start=datetime(2027, month, 2, tzinfo=PACIFIC)))[0]
        for month in (1, 6)
    )
    assert winter.astimezone(ZoneInfo("UTC")).hour == 16  # PST, UTC-8
    assert summer.astimezone(ZoneInfo("UTC")).hour == 15  # PDT, UTC-7
    assert winter.astimezone(PACIFIC).hour == summer.astimezone(PACIFIC).hour == 8


@pytest.mark.slow
def test_a_run_started_with_parameters_completes_and_loads_the_months(
    prefect_server, served, source
):
    deployment, work = served
    resp = prefect_server.api(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"start_month": "2024-01", "end_month": "2024-02"}},
    )
    resp.raise_for_status()
    run = wait_for(
        lambda: prefect_server.api("GET", f"/flow_runs/{resp.json()['id']}").json(),
        lambda r: r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"},
        timeout=240,
        what="the triggered run to finish",
        interval=2,
    )
    assert run["state"]["type"] == "COMPLETED", run["state"]
    expected = source_keys(source[1])
    lake = lake_keys(work / "lake")
    assert sorted(lake) == ["2024-01", "2024-02"]
    for month in ("2024-01", "2024-02"):
        assert sorted(lake[month]) == sorted(expected[month])

    artifacts = prefect_server.api(
        "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    ).json()
    assert {a["key"] for a in artifacts} >= {"load-summary", "load-progress"}


def trigger(prefect_server, deployment_id: str, parameters: dict) -> str:
    resp = prefect_server.api(
        "POST", f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters}
    )
    resp.raise_for_status()
    return resp.json()["id"]


@pytest.mark.slow
def test_two_runs_started_together_run_one_after_the_other(prefect_server, served):
    deployment, _ = served
    params = {"start_month": "2024-01", "end_month": "2024-03", "full_refresh": True}
    ids = [trigger(prefect_server, deployment["id"], params) for _ in range(2)]
    runs = [
        wait_for(
            lambda run_id=run_id: prefect_server.api("GET", f"/flow_runs/{run_id}").json(),
            lambda r: r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"},
            timeout=300,
            what="both runs to finish",
            interval=2,
        )
        for run_id in ids
    ]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert datetime.fromisoformat(first["end_time"]) <= datetime.fromisoformat(
        second["start_time"]
    ), "the deployment ran two loads of the same lake at once"


@pytest.mark.slow
def test_bad_parameters_are_rejected_before_the_run_starts(prefect_server, served):
    deployment, _ = served
    resp = prefect_server.api(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"start_month": "2024-13"}},
    )
    assert resp.status_code in (409, 422)
    assert "2024-13" in resp.text


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return path


@pytest.mark.slow
def test_the_ui_shows_the_deployment_and_its_schedule(prefect_server, served, tmp_path):
    deployment, _ = served
    page = f"{prefect_server.url}/deployments/deployment/{deployment['id']}"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", result.stdout))
    assert "Deployment: monthly" in text, text[:500]
    assert "parent_process_data" in text
    assert "At 08:00 AM on day 1 of the month" in text
    assert "Concurrency Limit 1" in text
