"""The Socrata reader against the local server: the contract, month counts, whole exact months.

Expected counts and keys always come from the generated rows, never from constants.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import pytest

from flows.errors import ContractError, IncompleteMonthError, SourceError
from flows.months import UNKNOWN_MONTH, month_window
from flows.sources.http import HttpClient
from flows.sources.socrata import SocrataReader, month_where
from flows.sources.specs import SPD_CRIME
from tests.socrata import FIELDS, SocrataServer, generate_rows, month_of

MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04"]
PAGE = 40
# rows kept per month: an exact multiple of the page, two odd sizes, a month smaller than a page
KEEP = {"2024-01": 3 * PAGE, "2024-02": 2 * PAGE + 21, "2024-03": PAGE + 1, "2024-04": 7}
NULL_REPORT_ROWS = 3


def make_rows() -> list[dict]:
    generated = generate_rows(MONTHS, rows_per_month=3 * PAGE, seed=17, null_report_rows=3)
    kept: list[dict] = []
    seen: Counter[str] = Counter()
    for row in generated:
        month = month_of(row) or UNKNOWN_MONTH
        if month == UNKNOWN_MONTH or seen[month] < KEEP[month]:
            kept.append(row)
            seen[month] += 1
    return kept


ROWS = make_rows()


def month_counts(rows: list[dict]) -> Counter[str]:
    return Counter(month_of(row) or UNKNOWN_MONTH for row in rows)


def month_keys(rows: list[dict], month: str) -> list[str]:
    return [row["offense_id"] for row in rows if (month_of(row) or UNKNOWN_MONTH) == month]


class RevisingServer(SocrataServer):
    """The local server, calling `after(query)` once each `/resource/` answer is ready, so a test
    can revise the data between two requests of one fetch (as SPD does while a month loads)."""

    after: Callable[[dict[str, str]], None] | None = None

    def _respond(self, path, query, target):
        answer = super()._respond(path, query, target)
        if self.after is not None and path.startswith("/resource/"):
            self.after(query)
        return answer


@pytest.fixture(scope="module")
def server():
    with RevisingServer(ROWS) as srv:
        srv.wait_warm(30)
        yield srv


@pytest.fixture
def source(server: RevisingServer):
    server.faults.reset()
    server.after = None
    server.set_rows(ROWS)  # undo any revision an earlier test made
    server.wait_warm(30)
    server.reset_log()
    yield server
    server.after = None
    server.faults.reset()


def reader_for(server: SocrataServer, month_attempts: int = 3, **http) -> SocrataReader:
    options = {"attempts": 3, "backoff_s": 0.01, "timeout_s": 10.0, **http}
    spec = SPD_CRIME.with_source(server.url, server.dataset_id)
    return SocrataReader(HttpClient(spec.portal_url, **options), spec, PAGE, month_attempts)


def page_requests(server: SocrataServer, month: str) -> list[dict[str, str]]:
    where = month_where(SPD_CRIME, month)
    return [
        r.query
        for r in server.requests_log
        # later pages add the key condition after the month's window
        if r.path.endswith(".csv") and r.query.get("$where", "").startswith(where)
    ]


def count_requests(server: SocrataServer, month: str) -> int:
    where = month_where(SPD_CRIME, month)
    return sum(
        1
        for r in server.requests_log
        if r.path.endswith(".json") and r.query.get("$where") == where
    )


def is_first_page(query: dict[str, str], month: str) -> bool:
    # a data page has a $limit; the count and the recheck after the last page have the same
    # $where but no $limit
    return (
        "$limit" in query
        and "$offset" not in query
        and query.get("$where") == month_where(SPD_CRIME, month)
    )


def new_row(month: str, offense_id: str, second: int = 1) -> dict:
    """A row reported `second` seconds into the month: it sorts before every generated one."""
    template = next(row for row in ROWS if month_of(row) == month)
    start, _ = month_window(month)
    row = {key: value for key, value in template.items() if not key.startswith(":")}
    row["offense_id"] = offense_id
    row["report_date_time"] = f"{start[:-6]}{second:02d}.000"
    return row


# --- contract -------------------------------------------------------------------------------


def test_check_contract_passes_and_returns_nothing_new_on_the_spec_fields(source):
    assert reader_for(source).check_contract() == []
    assert [r.path for r in source.requests_log] == [f"/api/views/{source.dataset_id}.json"]


def test_check_contract_returns_new_fields_sorted():
    with SocrataServer(ROWS[:10], fields=(*FIELDS, "zeta_flag", "arrest_made")) as extra:
        assert reader_for(extra).check_contract() == ["arrest_made", "zeta_flag"]


def test_check_contract_raises_naming_a_missing_field():
    with SocrataServer(ROWS[:10]) as renamed:
        renamed.rename_field("precinct", "precinct_name")
        with pytest.raises(ContractError) as caught:
            reader_for(renamed).check_contract()
    message = str(caught.value)
    assert message.startswith("The source dataset tazs-3rd5 no longer has the field 'precinct':")
    assert "update the dataset spec" in message
    assert "precinct_name" not in message


def test_check_contract_names_every_missing_field():
    with SocrataServer(ROWS[:10]) as renamed:
        renamed.rename_field("beat", "beat_code")
        renamed.rename_field("sector", "sector_code")
        with pytest.raises(ContractError, match=r"the field 'beat' \(nor sector\)"):
            reader_for(renamed).check_contract()


# --- month counts ---------------------------------------------------------------------------


def test_months_counts_every_month_in_one_request(source):
    months = reader_for(source).months()
    assert {month: stats.rows for month, stats in months.items()} == dict(month_counts(ROWS))
    assert months[UNKNOWN_MONTH].rows == NULL_REPORT_ROWS
    latest = {
        m: max(r[":updated_at"] for r in ROWS if (month_of(r) or UNKNOWN_MONTH) == m)
        for m in months
    }
    assert {month: stats.updated_at for month, stats in months.items()} == latest
    assert source.request_count == 1


def test_months_sees_a_revision_and_its_new_updated_at(source):
    before = reader_for(source).months()
    source.upsert_rows([new_row("2024-03", "99000001")])
    after = reader_for(source).months()
    assert after["2024-03"].rows == before["2024-03"].rows + 1
    assert str(after["2024-03"].updated_at) > str(before["2024-03"].updated_at)
    assert {m: s for m, s in after.items() if m != "2024-03"} == {
        m: s for m, s in before.items() if m != "2024-03"
    }


# --- whole months ---------------------------------------------------------------------------


@pytest.mark.parametrize("month", [*MONTHS, UNKNOWN_MONTH])
@pytest.mark.parametrize("with_known_count", [True, False])
def test_fetch_month_returns_exactly_the_months_rows(source, month, with_known_count):
    expected = month_keys(ROWS, month)
    known = len(expected) if with_known_count else None
    data = reader_for(source).fetch_month(month, known)

    keys = data.table.column("offense_id").to_pylist()
    assert len(keys) == len(set(keys)) == data.rows == len(expected)
    assert set(keys) == set(expected)
    assert data.month == month
    assert data.table.schema == SPD_CRIME.arrow_schema()
    # paging stops at the first short page: an exact multiple costs one more, empty, page
    assert data.pages == len(expected) // PAGE + 1
    assert data.pages == math.ceil(len(expected) / PAGE) + (len(expected) % PAGE == 0)
    pages = page_requests(source, month)
    assert len(pages) == data.pages
    # paged by key, never by offset: every page after the first starts after the last key seen
    assert all("$offset" not in q for q in pages)
    assert all(q["$where"] != pages[0]["$where"] for q in pages[1:])
    assert {q["$limit"] for q in pages} == {str(PAGE)}
    # a known count saves the count(*) request; a month of several pages is checked once more
    recheck = 1 if data.pages > 1 else 0
    assert count_requests(source, month) == (0 if with_known_count else 1) + recheck
    assert (
        data.requests
        == data.pages + (0 if with_known_count else 1) + recheck
        == source.request_count
    )


def test_an_exact_multiple_of_the_page_ends_on_an_empty_page(source):
    month = next(m for m in MONTHS if KEEP[m] % PAGE == 0)
    data = reader_for(source).fetch_month(month, KEEP[month])
    assert data.rows == KEEP[month]
    assert data.pages == KEEP[month] // PAGE + 1
    pages = page_requests(source, month)
    assert len(pages) == data.pages
    assert "$offset" not in pages[-1]


def test_a_month_with_no_rows_is_one_empty_page(source):
    data = reader_for(source).fetch_month("2023-06", 0)
    assert data.rows == 0
    assert data.pages == 1
    assert data.table.schema == SPD_CRIME.arrow_schema()


def test_a_month_revised_after_the_aggregate_count_is_fetched_again_and_exact(source):
    reader = reader_for(source)
    counts = reader.months()
    month = "2024-02"
    source.upsert_rows([new_row(month, "99000002")])
    source.wait_warm(30)
    source.reset_log()

    data = reader.fetch_month(month, counts[month].rows)  # the stale count

    expected = month_keys(source.rows, month)
    assert len(expected) == counts[month].rows + 1
    keys = data.table.column("offense_id").to_pylist()
    assert sorted(keys) == sorted(expected)
    assert "99000002" in keys
    # the stale count failed the first attempt; the retry asked for a fresh count(*), and
    # checked the month once more after its last page
    assert count_requests(source, month) == 2
    assert len(page_requests(source, month)) == 2 * data.pages


def test_a_month_revised_between_its_pages_is_caught_and_fetched_again(source):
    month = "2024-02"
    revised: list[str] = []

    def insert_after_first_page(query: dict[str, str]) -> None:
        # once, after page one: a row that sorts first shifts every later page by one
        if not revised and is_first_page(query, month):
            revised.append("99000003")
            source.upsert_rows([new_row(month, "99000003")])

    source.after = insert_after_first_page
    data = reader_for(source).fetch_month(month)

    assert revised == ["99000003"]
    expected = month_keys(source.rows, month)
    keys = data.table.column("offense_id").to_pylist()
    assert len(keys) == len(set(keys)) == len(expected) == KEEP[month] + 1
    assert set(keys) == set(expected)
    # attempt 1: count, pages, then the check after the last page sees the new row; attempt 2:
    # count, pages, check, exact
    assert count_requests(source, month) == 4


def test_a_page_cut_short_once_is_fetched_again_and_exact(source):
    source.faults.truncate_every = 1
    source.faults.max_faults = 1
    source.faults.fault_paths = (".csv",)
    month = "2024-02"
    data = reader_for(source).fetch_month(month, KEEP[month])
    assert source.faults.kinds() == ["truncate"]
    assert sorted(data.table.column("offense_id").to_pylist()) == sorted(month_keys(ROWS, month))


def test_a_month_that_never_reconciles_raises_after_month_attempts(source):
    month = "2024-03"
    added: list[str] = []

    def keep_revising(query: dict[str, str]) -> None:
        # a new row after every first page: each attempt's count is stale by the time it ends
        if is_first_page(query, month):
            added.append(str(99100000 + len(added)))
            source.upsert_rows([new_row(month, added[-1], second=len(added))])

    source.after = keep_revising
    reader = reader_for(source, month_attempts=3)
    result = None
    with pytest.raises(IncompleteMonthError) as caught:
        result = reader.fetch_month(month, KEEP[month])
    assert result is None
    assert len(added) == 3  # one per attempt, then it gave up
    message = str(caught.value)
    assert message.startswith(f"Month {month} could not be fetched completely (received ")
    assert "the source counts" in message
    assert message.endswith("after 3 attempts: nothing was written for it; run again later.")
    # attempts 2 and 3 asked for a fresh count, and each of the 3 checked after its last page
    assert count_requests(source, month) == 2 + 3


def test_a_page_cut_short_every_time_raises_incomplete_month(source):
    source.faults.truncate_every = 1
    source.faults.fault_paths = (".csv",)
    with pytest.raises(
        IncompleteMonthError, match=r"^Month 2024-01 could not be fetched completely"
    ):
        reader_for(source, month_attempts=2).fetch_month("2024-01", KEEP["2024-01"])
    assert len(source.faults.kinds()) == 2  # each attempt stopped at its first, broken, page


def test_a_source_that_keeps_failing_is_a_source_error_not_a_month_retry(source):
    source.faults.fail_always = True
    source.faults.fault_paths = (".csv",)
    with pytest.raises(SourceError) as caught:
        reader_for(source, month_attempts=3, attempts=2).fetch_month("2024-01", KEEP["2024-01"])
    assert type(caught.value) is SourceError
    assert "kept failing (answered HTTP 503) after 2 attempts" in str(caught.value)
    # HTTP attempts only: the month is not fetched again on top of them
    assert len(page_requests(source, "2024-01")) == 2


def test_the_reader_counts_its_requests(source):
    reader = reader_for(source)
    reader.check_contract()
    reader.months()
    data = reader.fetch_month("2024-02", KEEP["2024-02"])
    recheck = 1 if data.pages > 1 else 0  # a month of several pages is checked once more
    assert reader.requests_made == source.request_count == 2 + data.pages + recheck
