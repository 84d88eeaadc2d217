"""`python -m flows run` on a real `prefect server`: a month that cannot be fetched fails its own
task run and the flow run, the others load; the Socrata token comes from the Secret block.

One prefect server and one Socrata server for the module; each test has its own lake and
warehouse, and finds its flow run as the one that was not there before it ran.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from flows.sources.socrata import month_where
from flows.sources.specs import SPD_CRIME
from tests.lakecheck import lake_keys, source_keys, warehouse_keys
from tests.prefect_server import PrefectServer, prefect_env
from tests.socrata import SocrataServer, generate_rows
from tests.test_cli_errors import last_line

ROOT = Path(__file__).resolve().parent.parent
MONTHS = ["2024-01", "2024-02", "2024-03"]
BROKEN = "2024-02"
ARGS = ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[-1]]
DEFAULT_TOKEN_BLOCK = "socrata-app-token"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_rows(MONTHS, rows_per_month=150, seed=29, null_report_rows=2)


@pytest.fixture(scope="module")
def module_source(rows):
    with SocrataServer(rows) as server:
        server.wait_warm(30)
        yield server


@pytest.fixture
def source(module_source: SocrataServer):
    module_source.faults.reset()
    module_source.reset_log()
    yield module_source
    module_source.faults.reset()


def run_cli(
    prefect_server: PrefectServer, source: SocrataServer, work: Path, args=ARGS, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess against the module's servers; no SOCRATA_APP_TOKEN unless given."""
    env = prefect_env(work / "prefect-home", prefect_server.api_url)
    env = {k: v for k, v in env.items() if not k.startswith("SOCRATA_")}
    env.update(
        {
            "CRIME_SOURCE_URL": source.url,
            "CRIME_LAKE_URL": str(work / "lake"),
            "CRIME_DUCKDB_PATH": str(work / "warehouse.duckdb"),
            "CRIME_PAGE_SIZE": "100",
            "CRIME_HTTP_ATTEMPTS": "2",
            "CRIME_HTTP_BACKOFF": "0.01",
            "CRIME_REFRESH_MONTHS": "0",
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def flow_run_ids(prefect_server: PrefectServer) -> set[str]:
    resp = prefect_server.api(
        "POST", "/flow_runs/filter", json={"flows": {"name": {"any_": ["parent_process_data"]}}}
    )
    resp.raise_for_status()
    return {run["id"] for run in resp.json()}


def run_and_find(prefect_server, source, work, args=ARGS, **extra):
    """Run the CLI; return its result and the one flow run it created on the server."""
    before = flow_run_ids(prefect_server)
    result = run_cli(prefect_server, source, work, args, **extra)
    new = flow_run_ids(prefect_server) - before
    assert len(new) == 1, (new, result.stderr[-3000:])
    resp = prefect_server.api("GET", f"/flow_runs/{new.pop()}")
    resp.raise_for_status()
    return result, resp.json()


def task_runs(prefect_server: PrefectServer, flow_run_id: str) -> dict[str, dict]:
    resp = prefect_server.api(
        "POST", "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
    )
    resp.raise_for_status()
    return {run["name"]: run for run in resp.json()}


def run_logs(prefect_server: PrefectServer, flow_run_id: str) -> list[str]:
    messages: list[str] = []
    while True:
        resp = prefect_server.api(
            "POST",
            "/logs/filter",
            json={
                "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                "limit": 200,
                "offset": len(messages),
            },
        )
        resp.raise_for_status()
        page = [log["message"] for log in resp.json()]
        messages += page
        if len(page) < 200:
            return messages


def save_secret(prefect_server: PrefectServer, name: str, value: str) -> None:
    """A Secret block saved on the module's server, as setup/prefect_setup_blocks.py does."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        Secret(value=value).save(name, overwrite=True)
        saved = Secret.load(name)
        assert isinstance(saved, Secret)
        assert saved.get() == value


def assert_nowhere(token: str, work: Path, *outputs: str) -> None:
    for output in outputs:
        assert token not in output
    files = [p for p in (work / "lake").rglob("*") if p.is_file()]
    assert files, "the run wrote no lake files"
    for path in files:
        assert token.encode() not in path.read_bytes(), path
    duckdb_file = work / "warehouse.duckdb"
    assert duckdb_file.stat().st_size > 0
    assert token.encode() not in duckdb_file.read_bytes()


def test_a_month_that_cannot_be_fetched_fails_its_task_run_and_the_flow_run(
    prefect_server, source, rows, tmp_path
):
    # every request for that month's rows answers 503; the other months and the counts answer
    source.faults.fail_always = True
    source.faults.fault_paths = (month_where(SPD_CRIME, BROKEN),)

    result, flow_run = run_and_find(prefect_server, source, tmp_path)

    assert result.returncode == 1, result.stderr[-3000:]
    line = last_line(result.stderr)
    assert line.startswith(f"error: 1 month(s) could not be loaded ({BROKEN}); the others were ")
    assert "kept failing (answered HTTP 503) after 2 attempts" in line
    assert "Traceback" not in line
    assert source.faults.kinds() == ["fail", "fail"]  # the broken month's 2 HTTP attempts

    # the other months are in the lake and the warehouse, exactly; the broken one nowhere
    expected = source_keys(rows)
    lake = lake_keys(tmp_path / "lake")
    assert sorted(lake) == sorted(m for m in expected if m != BROKEN)
    for month, keys in lake.items():
        assert sorted(keys) == sorted(expected[month]), month
    manifests = tmp_path / "lake" / "_manifest" / "spd_crime"
    assert sorted(p.stem for p in manifests.glob("*.json")) == sorted(lake)
    warehouse = warehouse_keys(tmp_path / "warehouse.duckdb")
    assert sorted(warehouse) == sorted(lake)
    for month, keys in warehouse.items():
        assert keys == sorted(expected[month]), month

    # what Prefect recorded: the flow run failed, the month's task run failed with the reason
    assert flow_run["state"]["type"] == "FAILED", flow_run["state"]
    assert f"1 month(s) could not be loaded ({BROKEN})" in flow_run["state"]["message"]
    runs = task_runs(prefect_server, flow_run["id"])
    loads = {name: run for name, run in runs.items() if name.startswith("load-")}
    assert sorted(loads) == sorted(f"load-{month}" for month in expected)
    failed = loads.pop(f"load-{BROKEN}")
    assert failed["state"]["type"] == "FAILED", failed["state"]
    assert "SourceError" in failed["state"]["message"]
    assert "kept failing (answered HTTP 503) after 2 attempts" in failed["state"]["message"]
    assert {name: run["state"]["type"] for name, run in loads.items()} == dict.fromkeys(
        loads, "COMPLETED"
    )
    # the steps around the months ran: the contract before, staging after
    # (a task run without a task_run_name is named after its task plus a random suffix)
    others = {name.rsplit("-", 1)[0]: run["state"]["type"] for name, run in runs.items()}
    assert others["check-source-contract"] == "COMPLETED"
    assert others["rebuild-staging"] == "COMPLETED"
    assert any(
        "could not be fetched" in m or "kept failing" in m
        for m in run_logs(prefect_server, flow_run["id"])
    )

    # the next run, with the source well again, fetches only the month that failed
    source.faults.reset()
    source.reset_log()
    again, second_run = run_and_find(prefect_server, source, tmp_path)
    assert again.returncode == 0, last_line(again.stderr)
    assert second_run["state"]["type"] == "COMPLETED"
    pages = [r for r in source.requests_log if r.path.endswith(".csv")]
    assert pages
    # every page of the month, the later ones paged by key after the month's window
    assert all(r.query["$where"].startswith(month_where(SPD_CRIME, BROKEN)) for r in pages)
    assert {n for n in task_runs(prefect_server, second_run["id"]) if n.startswith("load-")} == {
        f"load-{BROKEN}"
    }
    lake = lake_keys(tmp_path / "lake")
    assert {m: sorted(k) for m, k in lake.items()} == {m: sorted(k) for m, k in expected.items()}


def test_the_token_comes_from_the_secret_block_and_is_never_written(
    prefect_server, source, tmp_path
):
    token = f"tok-{secrets.token_hex(12)}"
    save_secret(prefect_server, DEFAULT_TOKEN_BLOCK, token)

    result, flow_run = run_and_find(prefect_server, source, tmp_path)

    assert result.returncode == 0, last_line(result.stderr)
    assert flow_run["state"]["type"] == "COMPLETED"
    log = source.requests_log
    assert len(log) > 5
    assert {request.app_token for request in log} == {token}  # every request carried it
    assert_nowhere(token, tmp_path, result.stdout, result.stderr)
    logs = run_logs(prefect_server, flow_run["id"])
    assert logs
    assert not [message for message in logs if token in message]
    assert token not in str(flow_run["parameters"])


def test_the_configured_block_name_is_the_one_read(prefect_server, source, tmp_path):
    name = f"crime-token-{secrets.token_hex(4)}"
    token = f"tok-{secrets.token_hex(12)}"
    save_secret(prefect_server, name, token)
    save_secret(prefect_server, DEFAULT_TOKEN_BLOCK, f"tok-default-{secrets.token_hex(8)}")

    result, _ = run_and_find(
        prefect_server, source, tmp_path, CRIME_SOCRATA_TOKEN_BLOCK=name, CRIME_RUN_DBT="false"
    )

    assert result.returncode == 0, last_line(result.stderr)
    assert {request.app_token for request in source.requests_log} == {token}
    assert_nowhere(token, tmp_path, result.stdout, result.stderr)


def test_socrata_app_token_wins_over_the_block(prefect_server, source, tmp_path):
    block_token = f"tok-block-{secrets.token_hex(10)}"
    env_token = f"tok-env-{secrets.token_hex(10)}"
    save_secret(prefect_server, DEFAULT_TOKEN_BLOCK, block_token)

    result, flow_run = run_and_find(
        prefect_server, source, tmp_path, SOCRATA_APP_TOKEN=env_token, CRIME_RUN_DBT="false"
    )

    assert result.returncode == 0, last_line(result.stderr)
    assert flow_run["state"]["type"] == "COMPLETED"
    assert {request.app_token for request in source.requests_log} == {env_token}
    for token in (env_token, block_token):
        assert_nowhere(token, tmp_path, result.stdout, result.stderr)


def test_without_token_or_block_the_run_goes_on_unauthenticated(prefect_server, source, tmp_path):
    missing = f"no-such-block-{secrets.token_hex(4)}"
    result, _ = run_and_find(
        prefect_server, source, tmp_path, CRIME_SOCRATA_TOKEN_BLOCK=missing, CRIME_RUN_DBT="false"
    )
    assert result.returncode == 0, last_line(result.stderr)
    assert {request.app_token for request in source.requests_log} == {None}
    assert f"neither SOCRATA_APP_TOKEN nor the Secret block '{missing}'" in (
        result.stdout + result.stderr
    )
