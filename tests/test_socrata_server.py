"""The fake Socrata server speaks the SODA 2 protocol the pipeline relies on, over real sockets."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import requests

from tests.socrata import FIELDS, Faults, NetworkModel, SocrataServer, generate_rows, month_of
from tests.socrata.data import GENERATED_AT, Row

MONTHS = ["2024-01", "2024-02", "2024-03"]
ROWS_PER_MONTH = 400
NULL_ROWS = 3
PROJECT_ROOT = Path(__file__).resolve().parents[1]
ORDER = "report_date_time, offense_id"


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return generate_rows(MONTHS, ROWS_PER_MONTH, seed=11, null_report_rows=NULL_ROWS)


@pytest.fixture(scope="module")
def server(rows: list[Row]) -> Iterator[SocrataServer]:
    with SocrataServer(rows) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        yield client


def fetch(
    session: requests.Session, server: SocrataServer, fmt: str = "json", **params: Any
) -> requests.Response:
    soql = {f"${name}": value for name, value in params.items()}
    return session.get(f"{server.url}/resource/tazs-3rd5.{fmt}", params=soql, timeout=10)


def offense_ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [record["offense_id"] for record in response.json()]


def next_month(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def test_default_limit_is_1000(server: SocrataServer, session: requests.Session) -> None:
    assert len(offense_ids(fetch(session, server))) == 1000
    assert len(offense_ids(fetch(session, server, limit=50_000))) == len(server.rows)


def test_unordered_requests_come_back_in_a_different_order(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    first = offense_ids(fetch(session, server, limit=50_000))
    second = offense_ids(fetch(session, server, limit=50_000))
    assert first != second
    assert sorted(first) == sorted(second) == sorted(str(row["offense_id"]) for row in rows)
    # naive paging without $order skips some rows and repeats others
    pages = [offense_ids(fetch(session, server, limit=500, offset=o)) for o in (0, 500, 1000)]
    seen = [offense_id for page in pages for offense_id in page]
    assert len(set(seen)) < len(rows)


def test_ordered_paging_returns_every_row_exactly_once(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    seen: list[str] = []
    while True:
        page = offense_ids(fetch(session, server, order=ORDER, limit=250, offset=len(seen)))
        seen.extend(page)
        if len(page) < 250:
            break
    assert len(seen) == len(set(seen)) == len(rows)
    expected = sorted(
        rows,
        key=lambda row: (
            row["report_date_time"] is None,
            row["report_date_time"] or "",
            row["offense_id"],
        ),
    )
    # nulls sort last (ascending), as on Socrata, and offense_id ties break as text, not numbers
    assert seen == [row["offense_id"] for row in expected]


def test_paging_on_a_non_unique_order_loses_rows(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    tied = Counter(row["report_date_time"] for row in rows)
    assert max(tied.values()) > 1
    # ties come back in a new order on every request, so small pages skip and repeat rows
    seen: list[str] = []
    for offset in range(0, len(rows), 10):
        page = fetch(session, server, order="report_date_time", limit=10, offset=offset)
        seen.extend(offense_ids(page))
    assert len(seen) == len(rows)
    assert len(set(seen)) < len(rows)


@pytest.mark.parametrize("suffix", [".000", ""])
def test_count_matches_a_half_open_month_window(
    server: SocrataServer, session: requests.Session, rows: list[Row], suffix: str
) -> None:
    per_month = Counter(month_of(row) for row in rows)
    for month in MONTHS:
        where = (
            f"report_date_time >= '{month}-01T00:00:00{suffix}' "
            f"AND report_date_time < '{next_month(month)}-01T00:00:00{suffix}'"
        )
        response = fetch(session, server, select="count(*)", where=where)
        assert response.json() == [{"count": str(per_month[month])}]
    nulls = fetch(session, server, "csv", select="count(*) as n", where="report_date_time IS NULL")
    assert nulls.text == f'"n"\n"{NULL_ROWS}"\n'


def test_month_counts_in_one_grouped_request(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    response = fetch(
        session,
        server,
        select="date_trunc_ym(report_date_time) as month, count(*) as n",
        group="month",
        order="month",
    )
    assert response.status_code == 200, response.text
    per_month = Counter(month_of(row) for row in rows)
    # the null month sorts last in an ascending order, as on Socrata
    expected = [
        {"month": f"{month}-01T00:00:00.000", "n": str(per_month[month])} for month in MONTHS
    ] + [{"n": str(NULL_ROWS)}]
    assert response.json() == expected


def test_where_supports_boolean_logic_and_null_tests(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    where = (
        "(precinct = 'North' or PRECINCT = 'East') AND latitude IS NOT NULL "
        "and not (nibrs_offense_code = '13B')"
    )
    response = fetch(session, server, where=where, order=":id", limit=50_000)
    expected = [
        row["offense_id"]
        for row in sorted(rows, key=lambda row: str(row[":id"]))
        if row["precinct"] in ("North", "East")
        and row["latitude"] is not None
        and row["nibrs_offense_code"] != "13B"
    ]
    assert 0 < len(expected) == len(offense_ids(response))
    assert offense_ids(response) == expected


def test_json_values_are_strings_and_nulls_are_absent(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    response = fetch(session, server, select=":id, *", order=":id", limit=50_000)
    by_id = {row[":id"]: row for row in rows}
    records = response.json()
    assert len(records) == len(rows)
    for record in records:
        row = by_id[record[":id"]]
        assert record == {name: row[name] for name in (":id", *FIELDS) if row[name] is not None}
        assert all(isinstance(value, str) for value in record.values())


def test_csv_round_trips_awkward_values(
    server: SocrataServer, session: requests.Session, rows: list[Row]
) -> None:
    response = fetch(session, server, "csv", select=":id, *", order=":id", limit=50_000)
    assert response.headers["Content-Type"] == "text/csv; charset=UTF-8"
    expected = sorted(rows, key=lambda row: str(row[":id"]))
    names = [":id", *FIELDS]
    addresses = {row["block_address"] for row in rows}
    assert '1XX BLOCK OF "A" ST, APT 3\nREAR' in addresses
    assert "CAFÉ ÖSTERGÅRD, 12XX BLOCK OF NE 45TH ST" in addresses

    records = list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert records[0] == names
    # the csv module reads a null and an empty string alike; no generated value is empty
    assert records[1:] == [[row[name] or "" for name in names] for row in expected]

    table = pa_csv.read_csv(
        io.BytesIO(response.content),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    # an unquoted empty field is a null, a quoted one would be an empty string
    assert table.to_pylist() == [{name: row[name] for name in names} for row in expected]


def test_renamed_column_is_a_400_no_such_column(rows: list[Row], session: requests.Session) -> None:
    window = "report_date_time >= '2024-01-01T00:00:00' AND report_date_time < '2024-02-01'"
    with SocrataServer(rows) as renamed:
        assert fetch(session, renamed, where=window).status_code == 200
        renamed.rename_field("report_date_time", "report_datetime")
        response = fetch(session, renamed, where=window)
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "query.soql.no-such-column"
        assert body["error"] is True
        assert body["message"] == "No such column: report_date_time"
        assert body["data"]["column"] == "report_date_time"
        columns = session.get(f"{renamed.url}/api/views/tazs-3rd5.json", timeout=10).json()
        assert "report_datetime" in [column["fieldName"] for column in columns["columns"]]
        assert fetch(session, renamed, select="offense_start_datetime").status_code == 400
        assert fetch(session, renamed, order="report_date_time").status_code == 400


def test_wrong_dataset_id_is_404(server: SocrataServer, session: requests.Session) -> None:
    for path in (
        "/resource/abcd-1234.json",
        "/resource/abcd-1234.csv",
        "/api/views/abcd-1234.json",
    ):
        response = session.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert response.json()["error"] is True


def test_metadata_lists_columns_and_types(server: SocrataServer, session: requests.Session) -> None:
    view = session.get(f"{server.url}/api/views/tazs-3rd5.json", timeout=10).json()
    assert view["id"] == "tazs-3rd5"
    assert isinstance(view["rowsUpdatedAt"], int)
    types = {column["fieldName"]: column["dataTypeName"] for column in view["columns"]}
    assert tuple(types) == FIELDS
    assert types["report_date_time"] == types["offense_date"] == "calendar_date"
    assert types["latitude"] == "text"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 50_001}, "query.execution.limit-exceeded"),
        ({"where": "report_date_time >= '2023-4'"}, "query.soql.type-mismatch"),
        ({"where": "offense_id > 5"}, "query.soql.type-mismatch"),
        ({"where": "report_date_time >="}, "query.compiler.malformed"),
        ({"select": "count(*), precinct"}, "query.compiler.malformed"),
        ({"bogus": "1"}, "query.compiler.malformed"),
        ({"select": "foo"}, "query.soql.no-such-column"),
    ],
)
def test_bad_queries_are_400s(
    server: SocrataServer, session: requests.Session, params: dict[str, Any], code: str
) -> None:
    response = fetch(session, server, **params)
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_changed_rows_get_a_new_updated_at(rows: list[Row], session: requests.Session) -> None:
    with SocrataServer(rows) as changing:
        before = session.get(f"{changing.url}/api/views/tazs-3rd5.json", timeout=10).json()
        current = changing.rows
        current[5]["offense_category"] = "ALL OTHER"
        added = dict(current[6], **{":id": None, "offense_id": "99999999"})
        changing.set_rows([*current, added])
        where = f":updated_at > '{GENERATED_AT}'"
        changed = fetch(session, changing, select=":id, :updated_at, offense_id", where=where)
        assert sorted(record["offense_id"] for record in changed.json()) == sorted(
            [str(current[5]["offense_id"]), "99999999"]
        )
        assert all(record[":updated_at"] > GENERATED_AT for record in changed.json())
        changing.delete_rows([str(current[0][":id"])])
        total = fetch(session, changing, select="count(*)").json()
        assert total == [{"count": str(len(rows))}]
        after = session.get(f"{changing.url}/api/views/tazs-3rd5.json", timeout=10).json()
        assert after["rowsUpdatedAt"] >= before["rowsUpdatedAt"]


def test_each_fault_is_observed_once(rows: list[Row], session: requests.Session) -> None:
    faults = Faults()
    with SocrataServer(rows, faults=faults) as faulty:
        full = fetch(session, faulty, "csv", order=ORDER, limit=300)
        assert full.status_code == 200

        faults.throttle_every, faults.retry_after = 1, "0"
        throttled = fetch(session, faulty, "csv", order=ORDER, limit=300)
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "0")

        faults.throttle_every, faults.error_every = 0, 1
        failed = fetch(session, faulty, "csv", order=ORDER, limit=300)
        assert failed.status_code == 500
        assert failed.json()["error"] is True

        faults.error_every, faults.accepted_every = 0, 1
        accepted = fetch(session, faulty, "csv", order=ORDER, limit=300)
        assert (accepted.status_code, accepted.json()) == (202, {"message": "processing"})

        faults.accepted_every, faults.html_every = 0, 1
        html = fetch(session, faulty, "csv", order=ORDER, limit=300)
        assert html.status_code == 200
        assert html.headers["Content-Type"].startswith("text/html")

        faults.html_every, faults.truncate_every = 0, 1
        cut = fetch(session, faulty, "csv", order=ORDER, limit=300)
        assert cut.status_code == 200
        assert int(cut.headers["Content-Length"]) == len(cut.content) < len(full.content)
        assert full.content.startswith(cut.content)
        assert not cut.content.endswith(b"\n")

        faults.truncate_every, faults.drop_every = 0, 1
        with pytest.raises(
            (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
        ):
            fetch(session, faulty, "csv", order=ORDER, limit=300)

        faults.drop_every, faults.fail_always = 0, True
        assert fetch(session, faulty, "csv", order=ORDER, limit=300).status_code == 503
        # faults touch data requests only, never the metadata
        view = session.get(f"{faulty.url}/api/views/tazs-3rd5.json", timeout=10)
        assert view.status_code == 200

        faults.fail_always = False
        assert fetch(session, faulty, "csv", order=ORDER, limit=300).content == full.content
        kinds = ["throttle", "error", "accepted", "html", "truncate", "drop", "fail"]
        assert faults.kinds() == kinds
        statuses = [entry.status for entry in faulty.requests_log]
        assert statuses == [200, 429, 500, 202, 200, 200, 200, 503, 200, 200]


def test_faults_can_be_limited_and_filtered(rows: list[Row], session: requests.Session) -> None:
    faults = Faults(error_every=1, max_faults=2, fault_paths=(".csv",))
    with SocrataServer(rows, faults=faults) as faulty:
        assert fetch(session, faulty, "json", limit=1).status_code == 200
        statuses = [fetch(session, faulty, "csv", limit=1).status_code for _ in range(3)]
        assert statuses == [500, 500, 200]
        assert [record.request_number for record in faults.fault_log] == [1, 2]


def test_keep_alive_uses_one_connection(rows: list[Row], session: requests.Session) -> None:
    with SocrataServer(rows) as alive:
        for _ in range(5):
            assert fetch(session, alive, select="count(*)").status_code == 200
        assert alive.connections_opened == 1
        assert alive.request_count == 5
        alive.reset_log()
        assert alive.requests_log == []


def test_network_model_adds_latency_and_paces_the_body(
    rows: list[Row], session: requests.Session
) -> None:
    network = NetworkModel(latency_s=0.2, bandwidth_bytes_per_s=1e6)
    with SocrataServer(rows, network=network) as slow:
        started = time.monotonic()
        response = fetch(session, slow, "csv", order=ORDER, limit=50_000)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.2 + len(response.content) / 1e6 * 0.9


def test_month_page_is_fast_without_a_network_model(session: requests.Session) -> None:
    months = ["2023-01", "2023-02", "2023-03", "2023-04"]
    with SocrataServer(generate_rows(months, 7000, seed=3)) as fast:
        fast.wait_warm(timeout=30)
        where = "report_date_time >= '2023-02-01T00:00:00.000' AND report_date_time < '2023-03-01'"
        started = time.monotonic()
        response = fetch(session, fast, "csv", where=where, order=ORDER, limit=50_000)
        elapsed = time.monotonic() - started
    assert response.content.count(b"\n") > 7000
    # about 20 ms on a laptop; the bound leaves room for a busy CI machine
    assert elapsed < 0.25


def test_command_line_serves_until_sigterm() -> None:
    command = [
        sys.executable,
        "-m",
        "tests.socrata",
        "--port",
        "0",
        "--start",
        "2024-01",
        "--end",
        "2024-02",
        "--rows-per-month",
        "50",
        "--null-rows",
        "2",
    ]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("SOCRATA_URL=http://127.0.0.1:")
        url = line.removeprefix("SOCRATA_URL=")
        count = requests.get(f"{url}/resource/tazs-3rd5.json?$select=count(*)", timeout=10)
        assert count.json() == [{"count": "102"}]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
