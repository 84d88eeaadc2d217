"""A month revised while it pages is never loaded with rows missing: keyset paging, then a check.

Every expectation is counted from the server's rows at the end of the test, never hard-coded.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.months import UNKNOWN_MONTH
from flows.sources.http import HttpClient
from flows.sources.socrata import MonthData, SocrataReader
from flows.sources.specs import SPD_CRIME
from tests.lakecheck import lake_keys, source_keys, warehouse_keys
from tests.socrata import Revision, SocrataServer, generate_rows
from tests.socrata.data import Row
from tests.socrata.revisions import month_rows
from tests.test_cli_errors import last_line, run_cli

# the retries these tests provoke log warnings; once another test has started the Prefect API,
# those logs outside a flow run warn that they cannot be sent, which is not a failure here
pytestmark = pytest.mark.filterwarnings(
    "ignore:Logger 'flows.sources.socrata' attempted to send logs to the API:UserWarning"
)

MONTH = "2024-03"
WINDOW_START = f"{MONTH}-01T00:00:00.000"
PAGE = 500


def reader_for(server: SocrataServer, page_size: int = PAGE, attempts: int = 3) -> SocrataReader:
    client = HttpClient(server.url, timeout_s=10, attempts=3, backoff_s=0.01)
    spec = SPD_CRIME.with_source(server.url, SPD_CRIME.dataset_id)
    return SocrataReader(client, spec, page_size, attempts)


@pytest.fixture
def month_2000() -> list[Row]:
    return generate_rows([MONTH], rows_per_month=2000, seed=5)


@pytest.fixture
def server(month_2000: list[Row]) -> Iterator[SocrataServer]:
    with SocrataServer(month_2000) as running:
        yield running


def fetch(server: SocrataServer, month: str, page_size: int = PAGE, **kw: int) -> MonthData:
    reader = reader_for(server, page_size, **kw)
    try:
        known = reader.months()[month].rows
        server.reset_log()
        return reader.fetch_month(month, known_count=known)
    finally:
        reader.close()


def ids_in(data: MonthData) -> list[str | None]:
    return data.table.column("offense_id").to_pylist()


def assert_month_matches_server(data: MonthData, server: SocrataServer, month: str) -> None:
    """The month as loaded is exactly the month as the server holds it now."""
    expected = month_rows(server.rows, month)
    received = ids_in(data)
    assert data.rows == len(expected)
    assert len({i for i in received if i is not None}) == sum(1 for i in received if i is not None)
    assert sorted(i for i in received if i is not None) == sorted(
        str(row["offense_id"]) for row in expected if row["offense_id"] is not None
    )
    assert received.count(None) == sum(1 for row in expected if row["offense_id"] is None)


def data_pages(server: SocrataServer) -> list[dict[str, str]]:
    return [r.query for r in server.requests_log if r.path.endswith(".csv")]


def summaries(server: SocrataServer) -> list[dict[str, str]]:
    return [
        r.query
        for r in server.requests_log
        if r.path.endswith(".json") and "max(:updated_at)" in r.query.get("$select", "")
    ]


def test_rows_deleted_early_and_added_late_between_pages_are_not_lost(server):
    # the reproduced loss: 2000 rows, pages of 500, and between page 1 and page 2 the source
    # deletes the month's 5 earliest rows and adds 5 in its last hour
    revision = Revision(MONTH, delete_earliest=5, add_latest=5)
    hook = server.after_page(1, revision, where_contains=WINDOW_START)

    data = fetch(server, MONTH)

    assert hook.fired
    assert_month_matches_server(data, server, MONTH)
    assert not set(revision.deleted) & set(ids_in(data))
    assert set(revision.added) <= set(ids_in(data))
    pages = data_pages(server)
    assert all("$offset" not in page for page in pages)
    # pages after the first ask for the rows after the last key, in the same order
    assert all(page["$order"] == "report_date_time, offense_id" for page in pages)
    window = pages[0]["$where"]
    after = [page["$where"] for page in pages if page["$where"] != window]
    assert len(after) == len(pages) - 2  # each attempt's first page is the bare window
    assert all("report_date_time > '" in w and "offense_id > '" in w for w in after)
    assert data.requests == server.request_count


def test_a_revision_that_keeps_the_count_is_caught_by_the_latest_updated_at(server):
    # 5 deleted and 5 added before the cursor: count and keys look right, :updated_at does not
    revision = Revision(MONTH, delete_earliest=5, add_earliest=5)
    server.after_page(2, revision, where_contains=WINDOW_START)

    data = fetch(server, MONTH)

    assert_month_matches_server(data, server, MONTH)
    assert set(revision.added) <= set(ids_in(data))
    assert len(summaries(server)) == 2  # the first attempt's check failed, the second's passed


def test_rows_edited_after_their_page_are_fetched_again(server):
    revision = Revision(MONTH, edit_earliest=3)
    server.after_page(3, revision, where_contains=WINDOW_START)

    data = fetch(server, MONTH)

    assert_month_matches_server(data, server, MONTH)
    current = {row["offense_id"]: row["offense_category"] for row in server.rows}
    loaded = dict(zip(ids_in(data), data.table.column("offense_category").to_pylist(), strict=True))
    assert [loaded[i] for i in revision.edited] == [current[i] for i in revision.edited]


def test_a_source_that_keeps_changing_fails_the_month_with_the_usual_sentence(server):
    from flows.errors import IncompleteMonthError

    for attempt_page in (1, 6, 12):  # one revision during each attempt's paging
        server.after_page(
            attempt_page, Revision(MONTH, edit_earliest=1), where_contains=WINDOW_START
        )
    with pytest.raises(
        IncompleteMonthError, match=r"Month 2024-03 could not be fetched completely"
    ):
        fetch(server, MONTH)


def test_a_month_of_exactly_whole_pages_ends_on_an_empty_page_then_one_check(server):
    data = fetch(server, MONTH)

    assert_month_matches_server(data, server, MONTH)
    full_pages = data.rows // PAGE
    assert data.rows % PAGE == 0
    assert data.pages == full_pages + 1
    assert data.requests == data.pages + 1 == server.request_count
    assert len(summaries(server)) == 1


def test_a_month_of_one_page_costs_one_request(month_2000):
    with SocrataServer(month_2000) as server:
        data = fetch(server, MONTH, page_size=5000)
        assert_month_matches_server(data, server, MONTH)
        assert data.pages == 1
        assert data.requests == server.request_count == 1


def _place(rows: list[Row], month: str, start: int, count: int, **values: str | None) -> None:
    """Give `count` rows from position `start` (in paging order) the same values."""
    ordered = month_rows(rows, month)
    for row in ordered[start : start + count]:
        row.update(values)


def test_rows_sharing_one_report_time_across_a_page_boundary(month_2000):
    rows = [dict(row) for row in month_2000]
    ordered = month_rows(rows, MONTH)
    tied = str(ordered[PAGE - 20]["report_date_time"])
    _place(rows, MONTH, PAGE - 20, 45, report_date_time=tied)  # 20 on page 1, 25 on page 2
    ordered = month_rows(rows, MONTH)
    assert ordered[PAGE - 1]["report_date_time"] == ordered[PAGE]["report_date_time"] == tied
    with SocrataServer(rows) as server:
        data = fetch(server, MONTH)
        assert_month_matches_server(data, server, MONTH)
        times = data.table.column("report_date_time").to_pylist()
        assert sum(1 for t in times if t is not None and t.isoformat() == tied[:19]) >= 45


def test_null_offense_ids_across_a_page_boundary_are_neither_skipped_nor_repeated(month_2000):
    rows = [dict(row) for row in month_2000]
    ordered = month_rows(rows, MONTH)
    shared = ordered[PAGE - 4]["report_date_time"]
    # 9 rows at one report time with no offense_id straddle the end of page 1 ...
    _place(rows, MONTH, PAGE - 6, 12, report_date_time=shared)
    for row in month_rows(rows, MONTH)[PAGE - 6 : PAGE - 6 + 12][3:]:
        row["offense_id"] = None
    ordered = month_rows(rows, MONTH)
    assert ordered[PAGE - 1]["offense_id"] is None
    assert ordered[PAGE]["offense_id"] is None
    assert ordered[PAGE - 1]["report_date_time"] == ordered[PAGE]["report_date_time"] == shared
    # ... and others are scattered over the later pages
    for position in random.Random(3).sample(range(PAGE + 10, 2000), 12):
        month_rows(rows, MONTH)[position]["offense_id"] = None
    with SocrataServer(rows) as server:
        data = fetch(server, MONTH)
        assert_month_matches_server(data, server, MONTH)
        assert ids_in(data).count(None) == 9 + 12


def test_a_group_of_null_offense_ids_bigger_than_a_page_is_fetched_whole(month_2000):
    rows = [dict(row) for row in month_2000]
    shared = month_rows(rows, MONTH)[100]["report_date_time"]
    _place(rows, MONTH, 90, 130, report_date_time=shared)
    for row in month_rows(rows, MONTH)[95:215]:
        row["offense_id"] = None  # 120 rows share (time, null) across pages of 50
    with SocrataServer(rows) as server:
        data = fetch(server, MONTH, page_size=50)
        assert_month_matches_server(data, server, MONTH)
        assert ids_in(data).count(None) == 120


def test_the_unknown_month_pages_by_offense_id_alone():
    rows = generate_rows([MONTH], rows_per_month=10, seed=9, null_report_rows=2 * PAGE)
    unknown = month_rows(rows, UNKNOWN_MONTH)
    for row in unknown[PAGE - 2 : PAGE + 3] + unknown[-4:]:
        row["offense_id"] = None  # sorted last: the second full page ends in 9 of them
    with SocrataServer(rows) as server:
        revision = Revision(UNKNOWN_MONTH, delete_earliest=2, add_latest=2)
        server.after_page(1, revision, where_contains="report_date_time IS NULL")
        data = fetch(server, UNKNOWN_MONTH)
        assert_month_matches_server(data, server, UNKNOWN_MONTH)
        pages = data_pages(server)
        assert {page["$order"] for page in pages} == {"offense_id"}
        assert all("$offset" not in page for page in pages)
        assert ids_in(data).count(None) == 9


@pytest.mark.slow
def test_the_cli_loads_a_month_revised_mid_paging_completely(
    month_2000, prefect_api_url, tmp_path: Path
):
    with SocrataServer(month_2000) as server:
        revision = Revision(MONTH, delete_earliest=5, add_latest=5)
        hook = server.after_page(1, revision, where_contains=WINDOW_START)
        env = {
            "CRIME_SOURCE_URL": server.url,
            "CRIME_LAKE_URL": str(tmp_path / "lake"),
            "CRIME_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
            "CRIME_PAGE_SIZE": str(PAGE),
            "CRIME_HTTP_BACKOFF": "0.01",
        }
        args = ["run", "--start-month", MONTH, "--end-month", MONTH, "--force", MONTH]
        result = run_cli(args, env, prefect_api_url)
        assert result.returncode == 0, last_line(result.stderr)
        assert hook.fired
        expected = source_keys(server.rows)
    lake = lake_keys(tmp_path / "lake")
    assert sorted(lake[MONTH]) == sorted(expected[MONTH])
    assert len(lake[MONTH]) == len(expected[MONTH])
    assert warehouse_keys(tmp_path / "warehouse.duckdb")[MONTH] == sorted(expected[MONTH])
