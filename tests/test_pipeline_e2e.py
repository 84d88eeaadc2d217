"""The parent flow end to end through the real Prefect engine, against the local SODA server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.errors import PipelineError
from flows.flow import parent_process_data
from tests.lakecheck import lake_fingerprint, lake_keys, source_keys, warehouse_keys
from tests.socrata import Faults, SocrataServer, generate_rows
from tests.socrata.data import month_of

MONTHS = ["2023-11", "2023-12", "2024-01", "2024-02"]
PAGE = 150


@pytest.fixture
def rows() -> list[dict]:
    # 300 rows a month is exactly two full pages; 2024-01 loses 7 rows so it ends on a short page
    generated = generate_rows(MONTHS, rows_per_month=2 * PAGE, seed=11, null_report_rows=4)
    dropped = [r for r in generated if month_of(r) == "2024-01"][:7]
    return [r for r in generated if r not in dropped]


@pytest.fixture
def server(rows: list[dict]):
    faults = Faults(
        throttle_every=5,
        error_every=7,
        drop_every=9,
        truncate_every=11,
        html_every=13,
        accepted_every=17,
        retry_after="0",
    )
    with SocrataServer(rows, faults=faults) as srv:
        srv.start()
        yield srv


@pytest.fixture
def configured(workdir: Path, server: SocrataServer, clean_env: pytest.MonkeyPatch) -> Path:
    clean_env.setenv("CRIME_SOURCE_URL", server.url)
    clean_env.setenv("CRIME_PAGE_SIZE", str(PAGE))
    clean_env.setenv("CRIME_START_MONTH", MONTHS[0])
    clean_env.setenv("CRIME_MONTH_ATTEMPTS", "5")
    # about 4 in 10 requests fail here; 10 tries make a lost month vanishingly unlikely
    clean_env.setenv("CRIME_HTTP_ATTEMPTS", "10")
    return workdir


def run_flow(**overrides):
    params: dict[str, Any] = {
        "start_month": MONTHS[0],
        "end_month": MONTHS[-1],
        "refresh_months": 0,
    }
    params.update(overrides)
    return parent_process_data(**params)


@pytest.mark.slow
def test_backfill_loads_every_source_row_once_with_faults_on(
    prefect_api_url: str, configured: Path, server: SocrataServer, rows: list[dict]
) -> None:
    result = run_flow()

    expected = source_keys(rows)
    lake = lake_keys(configured / "lake")
    assert sorted(lake) == sorted(expected) == [*MONTHS, "unknown"]
    for month, keys in expected.items():
        assert len(lake[month]) == len(keys), month
        assert set(lake[month]) == keys, month
    warehouse = warehouse_keys(configured / "warehouse.duckdb")
    for month, keys in expected.items():
        assert sorted(warehouse[month]) == sorted(keys), month
    assert result["rows_loaded"] == len(rows) == result["staging_rows"]
    # the faults really happened and were survived
    kinds = set(server.faults.kinds())
    assert kinds == {"throttle", "error", "drop", "truncate", "html", "accepted"}
    pages = {m["month"]: m["pages"] for m in result["months"]}
    assert pages["2023-11"] == 3  # two full pages and the empty one that ends the month
    assert pages["2024-01"] == 2

    # the quality report counts what staging cleaned, recounted here from the source's rows
    sentinels = {"", "-", "REDACTED", "OOJ", "UNKNOWN", "UNKNOW"}
    expected_precinct = {
        month: sum(
            1
            for r in rows
            if (month_of(r) or "unknown") == month
            and r["precinct"] is not None
            and r["precinct"].strip().upper() in sentinels
        )
        for month in expected
    }
    with duckdb.connect(str(configured / "warehouse.duckdb")) as con:
        quality = dict(
            con.execute(
                "select report_month, precinct_sentinels from crime_marts.rpt_data_quality"
            ).fetchall()
        )
    assert quality == expected_precinct
    assert sum(expected_precinct.values()) > 0

    before = lake_fingerprint(configured / "lake")
    server.faults.reset()
    server.reset_log()
    again = run_flow()
    assert again["months"] == []
    assert again["requests"] == server.request_count == 2  # metadata and one aggregate
    assert lake_fingerprint(configured / "lake") == before
    assert warehouse_keys(configured / "warehouse.duckdb") == warehouse


@pytest.mark.slow
def test_revisions_in_past_months_converge_without_a_full_reload(
    prefect_api_url: str, configured: Path, server: SocrataServer, rows: list[dict]
) -> None:
    run_flow()
    # beyond any refresh window: edit, delete and add in 2023-11, move one offense from
    # 2023-12 to the null-report-time partition
    current = server.rows
    nov = [r for r in current if month_of(r) == "2023-11"]
    dec = [r for r in current if month_of(r) == "2023-12"]
    edited = {**nov[0], "offense_category": "PROPERTY CRIME", "precinct": "North"}
    moved = {**dec[0], "report_date_time": None}
    added = {**nov[1], ":id": "row-new0-0001", "offense_id": "99999991"}
    deleted = {nov[2][":id"]}
    revised = [r for r in current if r[":id"] not in deleted | {edited[":id"], moved[":id"]}]
    server.set_rows([*revised, edited, moved, added])
    server.faults.reset()

    result = run_flow()
    refetched = {m["month"]: m["reason"] for m in result["months"]}
    # 2023-11 lost one row and gained one: only :updated_at shows the change
    assert refetched == {
        "2023-11": "rows updated",
        "2023-12": "count changed (300 -> 299)",
        "unknown": "count changed (4 -> 5)",
    }
    expected = source_keys(server.rows)
    lake = lake_keys(configured / "lake")
    warehouse = warehouse_keys(configured / "warehouse.duckdb")
    for month, keys in expected.items():
        assert sorted(lake[month]) == sorted(keys), month
        assert sorted(warehouse[month]) == sorted(keys), month
    assert sum(len(v) for v in lake.values()) == len(server.rows)


@pytest.mark.slow
def test_renamed_column_stops_the_run_before_anything_is_written(
    prefect_api_url: str, configured: Path, server: SocrataServer
) -> None:
    run_flow(end_month="2023-12")
    before = lake_fingerprint(configured / "lake")

    server.rename_field("offense_category", "offense_category_nibrs")
    with pytest.raises(PipelineError, match="no longer has the field 'offense_category'"):
        run_flow(force_months=["2023-11"])
    assert lake_fingerprint(configured / "lake") == before
