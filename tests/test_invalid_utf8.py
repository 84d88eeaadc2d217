"""A value that is not valid UTF-8 is mended and counted; it no longer keeps its month out."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import requests

from flows.sources.http import HttpClient
from flows.sources.socrata import SocrataReader, page_params, read_csv_page
from flows.sources.specs import SPD_CRIME
from tests.socrata import SocrataServer, generate_rows, invalid_utf8
from tests.socrata.data import Row
from tests.socrata.revisions import month_rows

MONTH = "2024-03"
BAD_ADDRESS = b"CAF\xc9 12XX BLOCK OF NE 45TH ST"  # Latin-1, not UTF-8
BAD_DATE = b"2024-03-02T10:00:00.000\xff"


def rows_with_bad_bytes(count: int, positions: list[int]) -> list[Row]:
    rows = generate_rows([MONTH], rows_per_month=count, seed=4)
    ordered = month_rows(rows, MONTH)
    for position in positions:
        ordered[position]["block_address"] = invalid_utf8(BAD_ADDRESS)
    ordered[positions[0]]["offense_date"] = invalid_utf8(BAD_DATE)
    return rows


def reader_for(server: SocrataServer, page_size: int) -> SocrataReader:
    client = HttpClient(server.url, timeout_s=10, attempts=2, backoff_s=0.01)
    return SocrataReader(
        client, SPD_CRIME.with_source(server.url, SPD_CRIME.dataset_id), page_size, 2
    )


def test_the_server_sends_the_bad_bytes_as_they_are_in_csv_and_json():
    rows = rows_with_bad_bytes(20, [3])
    params = page_params(SPD_CRIME, "report_date_time IS NOT NULL", 50_000)
    with SocrataServer(rows) as server, requests.Session() as session:
        bodies = {
            fmt: session.get(
                f"{server.url}/resource/tazs-3rd5.{fmt}", params=params, timeout=10
            ).content
            for fmt in ("csv", "json")
        }
    for fmt, body in bodies.items():
        assert BAD_ADDRESS in body, fmt
        assert BAD_DATE in body, fmt
        assert body.count(b"\xc9") == 1, fmt
    # pyarrow refuses such a page read as text: this is what kept the month out before
    with pytest.raises(pa.ArrowInvalid, match="UTF8"):
        pacsv.read_csv(
            io.BytesIO(bodies["csv"]),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in SPD_CRIME.field_names}
            ),
        )
    table = read_csv_page(bodies["csv"], SPD_CRIME)
    assert table.num_rows == 20
    assert (
        table.column("block_address").to_pylist().count(BAD_ADDRESS.decode("utf-8", "replace")) == 1
    )


def test_a_month_with_invalid_utf8_loads_every_row_and_counts_the_bad_values():
    positions = [7, 520, 1100]  # one on each of three pages of 500
    rows = rows_with_bad_bytes(1200, positions)
    with SocrataServer(rows) as server:
        reader = reader_for(server, page_size=500)
        known = reader.months()[MONTH].rows
        data = reader.fetch_month(MONTH, known_count=known)
        reader.close()
        expected = month_rows(server.rows, MONTH)

    assert data.rows == len(expected) == known
    assert sorted(data.table.column("offense_id").to_pylist()) == sorted(
        str(row["offense_id"]) for row in expected
    )
    addresses = data.table.column("block_address").to_pylist()
    mended = BAD_ADDRESS.decode("utf-8", "replace")
    assert addresses.count(mended) == len(positions)
    assert "\ufffd" in mended
    # text keeps the rest of its value, a timestamp that is not one becomes null
    bad_row = expected[positions[0]]
    index = data.table.column("offense_id").to_pylist().index(bad_row["offense_id"])
    assert data.table.column("offense_date")[index].as_py() is None
    # counted under the column's name, with the values nulled for failing their type
    assert data.nulled["block_address"] == len(positions)
    assert data.nulled["offense_date"] == 1
    assert data.nulled.get("latitude", 0) == sum(
        1
        for row in expected
        if row["latitude"] is not None and not _is_number(str(row["latitude"]))
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
