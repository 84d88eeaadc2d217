"""Reading one Socrata dataset through SoQL: its contract, month counts, whole months as Arrow."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flows.errors import ContractError, IncompleteMonthError, SourceError
from flows.months import UNKNOWN_MONTH, month_window
from flows.sources.casting import convert_table
from flows.sources.http import HttpClient
from flows.sources.specs import DatasetSpec

log = logging.getLogger(__name__)

UPDATED_AT = ":updated_at"


@dataclass
class MonthData:
    month: str
    table: pa.Table
    pages: int
    requests: int
    seconds: float
    nulled: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)


def check_contract(client: HttpClient, spec: DatasetSpec) -> list[str]:
    """Compare the dataset's columns with the spec; return the unknown new ones.

    Raises ContractError naming the first expected field the source no longer has.
    """
    meta = client.get_json(f"/api/views/{spec.dataset_id}.json")
    columns = meta.get("columns") if isinstance(meta, dict) else None
    if not isinstance(columns, list):
        raise SourceError(
            f"The source's metadata for dataset {spec.dataset_id} has no column list: "
            "check CRIME_DATASET_ID and CRIME_SOURCE_URL."
        )
    present: set[str] = {
        name
        for col in columns
        if isinstance(col, dict) and isinstance(name := col.get("fieldName"), str)
    }
    missing = [name for name in spec.field_names if name not in present]
    if missing:
        raise ContractError(
            f"The source dataset {spec.dataset_id} no longer has the field '{missing[0]}'"
            + (f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + ": it was renamed or removed upstream; update the dataset spec in "
            "flows/sources/specs.py and the staging model before loading again."
        )
    return sorted(name for name in present - set(spec.field_names) if not name.startswith(":"))


@dataclass(frozen=True)
class SourceMonth:
    rows: int
    updated_at: str | None  # the latest :updated_at among the month's rows


def source_months(client: HttpClient, spec: DatasetSpec) -> dict[str, SourceMonth]:
    """Every month's row count and latest :updated_at in ONE aggregate request.

    Null report times group under UNKNOWN_MONTH. This is what makes a no-change run cheap: the
    lake is compared with it and only months that differ are fetched.
    """
    rows = client.get_json(
        f"/resource/{spec.dataset_id}.json",
        {
            "$select": f"date_trunc_ym({spec.month_column}) AS month, count(*) AS n, "
            f"max({UPDATED_AT}) AS last_updated",
            "$group": "month",
            "$order": "month",
            "$limit": "50000",
        },
    )
    months: dict[str, SourceMonth] = {}
    try:
        for row in rows:
            month = row["month"][:7] if row.get("month") else UNKNOWN_MONTH
            months[month] = SourceMonth(int(row["n"]), row.get("last_updated"))
    except (KeyError, TypeError, ValueError):
        raise SourceError(
            f"The source returned unreadable month counts for dataset {spec.dataset_id}."
        ) from None
    return months


def month_where(spec: DatasetSpec, month: str) -> str:
    column = spec.month_column
    if month == UNKNOWN_MONTH:
        return f"{column} IS NULL"
    start, end = month_window(month)
    return f"{column} >= '{start}' AND {column} < '{end}'"


def count_rows(client: HttpClient, spec: DatasetSpec, where: str) -> int:
    rows = client.get_json(
        f"/resource/{spec.dataset_id}.json",
        {"$select": "count(*) AS n", "$where": where},
    )
    try:
        return int(rows[0]["n"])
    except (IndexError, KeyError, TypeError, ValueError):
        raise SourceError(f"The source returned an unreadable count for {where!r}.") from None


def page_params(spec: DatasetSpec, where: str, limit: int, offset: int) -> dict[str, str]:
    """SoQL for one page: explicit limit, and a total order so pages never overlap or skip."""
    return {
        "$select": f"{UPDATED_AT}, {', '.join(spec.field_names)}",
        "$where": where,
        "$order": f"{spec.month_column}, {spec.key_column}",
        "$limit": str(limit),
        "$offset": str(offset),
    }


def read_csv_page(body: bytes, spec: DatasetSpec) -> pa.Table:
    """Parse one CSV page with every column as text; typing happens once per month."""
    names = [UPDATED_AT, *spec.field_names]
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
                include_columns=names,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise IncompleteMonthError(f"unreadable CSV page ({str(exc).splitlines()[0]})") from None
    return table


def fetch_rows(
    client: HttpClient, spec: DatasetSpec, month: str, page_size: int
) -> tuple[pa.Table, int]:
    """All rows of one month as text columns, page by page until a short page."""
    where = month_where(spec, month)
    pages: list[pa.Table] = []
    offset = 0
    while True:
        resp = client.get(
            f"/resource/{spec.dataset_id}.csv",
            page_params(spec, where, page_size, offset),
            expect="csv",
        )
        page = read_csv_page(resp.body, spec)
        pages.append(page)
        offset += page.num_rows
        if page.num_rows < page_size:
            break
    return pa.concat_tables(pages), len(pages)


def fetch_month(
    client: HttpClient,
    spec: DatasetSpec,
    month: str,
    page_size: int,
    attempts: int = 3,
    known_count: int | None = None,
) -> MonthData:
    """Fetch a whole month and prove it complete: rows == count(*) and keys unique.

    `known_count` is the month's count from the run's aggregate request: the first attempt is
    checked against it, which saves a request per month; a retry asks for a fresh count(*).
    A mismatch (rows revised mid-fetch, a truncated body) is retried; after `attempts` the month
    fails and nothing is returned, so nothing partial can be written.
    """
    started = time.monotonic()
    before = client.requests_made
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            if attempt == 1 and known_count is not None:
                expected = known_count
            else:
                expected = count_rows(client, spec, month_where(spec, month))
            raw, pages = fetch_rows(client, spec, month, page_size)
            keys = raw.column(spec.key_column)
            # repeated keys mean pages overlapped; null keys are counted, not compared
            distinct = pc.count_distinct(keys, mode="only_valid").as_py() + keys.null_count
            if raw.num_rows == expected and distinct == raw.num_rows:
                table, nulled = convert_table(raw, spec)
                return MonthData(
                    month=month,
                    table=table,
                    pages=pages,
                    requests=client.requests_made - before,
                    seconds=time.monotonic() - started,
                    nulled=nulled,
                )
            problem = (
                f"received {raw.num_rows} rows ({distinct} distinct {spec.key_column}) "
                f"but the source counts {expected}"
            )
        except IncompleteMonthError as exc:
            problem = str(exc)
        log.warning("month %s attempt %d/%d: %s", month, attempt, attempts, problem)
    raise IncompleteMonthError(
        f"Month {month} could not be fetched completely ({problem}) after {attempts} attempts: "
        "nothing was written for it; run again later."
    )


class SocrataReader:
    """One Socrata dataset on one portal: the client and the spec that travel together."""

    def __init__(
        self, client: HttpClient, spec: DatasetSpec, page_size: int, month_attempts: int
    ) -> None:
        self.client = client
        self.spec = spec
        self.page_size = page_size
        self.month_attempts = month_attempts

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    def check_contract(self) -> list[str]:
        return check_contract(self.client, self.spec)

    def months(self) -> dict[str, SourceMonth]:
        return source_months(self.client, self.spec)

    def fetch_month(self, month: str, known_count: int | None = None) -> MonthData:
        return fetch_month(
            self.client, self.spec, month, self.page_size, self.month_attempts, known_count
        )

    def close(self) -> None:
        self.client.close()
