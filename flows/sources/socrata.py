"""Reading one Socrata dataset through SoQL: its contract, month counts, whole months as Arrow."""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flows.errors import ContractError, IncompleteMonthError, SourceError
from flows.months import UNKNOWN_MONTH, month_window
from flows.sources.casting import convert_table, repair_text
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


def month_summary(client: HttpClient, spec: DatasetSpec, month: str) -> SourceMonth:
    """One month's count(*) and max(:updated_at): source_months' answer for one window."""
    where = month_where(spec, month)
    rows = client.get_json(
        f"/resource/{spec.dataset_id}.json",
        {"$select": f"count(*) AS n, max({UPDATED_AT}) AS last_updated", "$where": where},
    )
    try:
        return SourceMonth(int(rows[0]["n"]), rows[0].get("last_updated"))
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        raise SourceError(f"The source returned an unreadable count for {where!r}.") from None


def page_order(spec: DatasetSpec, month: str) -> str:
    """The total order a month is paged in; the `unknown` month has no time to order by."""
    if month == UNKNOWN_MONTH:
        return spec.key_column
    return f"{spec.month_column}, {spec.key_column}"


def page_params(
    spec: DatasetSpec, where: str, limit: int, offset: int = 0, order: str | None = None
) -> dict[str, str]:
    """SoQL for one page: explicit limit, and a total order so pages never overlap or skip.

    The loader pages by key (`where` carries the last key seen), so it never sends an offset;
    `offset` is kept for the benchmarks that measure offset paging.
    """
    params = {
        "$select": f"{UPDATED_AT}, {', '.join(spec.field_names)}",
        "$where": where,
        "$order": order or f"{spec.month_column}, {spec.key_column}",
        "$limit": str(limit),
    }
    if offset:
        params["$offset"] = str(offset)
    return params


def text_literal(value: str) -> str:
    """A SoQL string literal: single quotes, an embedded quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def timestamp_literal(value: str) -> str:
    """A floating timestamp as a SoQL literal, from the text the source sent for it."""
    if not _FLOATING_TS_RE.match(value):
        raise IncompleteMonthError(f"unreadable report time {value[:40]!r} on a page boundary")
    return f"'{value}'"


# How keyset paging treats nulls. SoQL orders nulls LAST in an ascending $order and first in a
# descending one, as PostgreSQL does (soql-reference's parser: nullLast defaults to ascending);
# the local test server does the same. So within one report_date_time the rows with a null
# offense_id come after every non-null one, and a comparison with null is never true:
#  - after a row (T, K): `time > T OR (time = T AND (key > K OR key IS NULL))`, so the null-key
#    rows of T that follow K are still asked for;
#  - after a row (T, null): no key tells apart the rows sharing (T, null), so the page is cut
#    before that group and the next request asks for the whole group again, then what follows:
#    `time > T OR (time = T AND key IS NULL)`. A group bigger than a page is fetched with a larger
#    $limit instead of looping.
# offense_id is text in the dataset, so it is compared as a quoted text literal: in the order the
# source sorts it ('10' < '9'), which is the order the pages come in.
def after_key(spec: DatasetSpec, month: str, time_value: str | None, key: str | None) -> str:
    """The condition for the rows that come after (time_value, key) in page_order."""
    column, key_column = spec.month_column, spec.key_column
    if key is None:
        tail = f"{key_column} IS NULL"
    else:
        tail = f"({key_column} > {text_literal(key)} OR {key_column} IS NULL)"
    if month == UNKNOWN_MONTH:
        return tail
    if time_value is None:
        raise IncompleteMonthError(f"a row with no {column} came back for month {month}")
    stamp = timestamp_literal(time_value)
    return f"({column} > {stamp} OR ({column} = {stamp} AND {tail}))"


def read_csv_page(body: bytes, spec: DatasetSpec) -> pa.Table:
    """Parse one CSV page with every column as text; typing happens once per month."""
    return repair_text(read_csv_bytes(body, spec), spec)[0]


def read_csv_bytes(body: bytes, spec: DatasetSpec) -> pa.Table:
    """One CSV page with every column as bytes, so one value that is not valid UTF-8 cannot
    make the whole page unreadable (pyarrow refuses it in a string column); repair_text in
    flows/sources/casting.py then makes text of them and counts what it had to mend."""
    names = [UPDATED_AT, *spec.field_names]
    try:
        return pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.binary() for name in names},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
                include_columns=names,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise IncompleteMonthError(f"unreadable CSV page ({str(exc).splitlines()[0]})") from None


@dataclass
class MonthRows:
    """A month's rows as received, before typing, and the values that were not valid UTF-8."""

    table: pa.Table
    pages: int
    invalid_utf8: dict[str, int] = field(default_factory=dict)


def fetch_rows(
    client: HttpClient, spec: DatasetSpec, month: str, page_size: int
) -> tuple[pa.Table, int]:
    """All rows of one month as text columns, and the number of pages it took."""
    rows = fetch_month_rows(client, spec, month, page_size)
    return rows.table, rows.pages


def fetch_month_rows(
    client: HttpClient, spec: DatasetSpec, month: str, page_size: int
) -> MonthRows:
    """All rows of one month as text columns, page by page by key until a short page.

    Each page after the first asks for the rows after the last one received (after_key), never
    for an offset: a row deleted or added before the cursor while the month pages cannot shift
    the later pages, so no row is skipped; fetch_month's checks catch what did change.
    """
    window = month_where(spec, month)
    order = page_order(spec, month)
    kept: list[pa.Table] = []
    invalid: dict[str, int] = {}
    where = window
    limit = page_size
    requests = 0
    while True:
        resp = client.get(
            f"/resource/{spec.dataset_id}.csv",
            page_params(spec, where, limit, order=order),
            expect="csv",
        )
        requests += 1
        page = read_csv_bytes(resp.body, spec)
        if page.num_rows < limit:
            kept.append(_mend(page, spec, invalid))
            break
        times = page.column(spec.month_column)
        keys = page.column(spec.key_column)
        last_time, last_key = _text(times[-1].as_py()), _text(keys[-1].as_py())
        if last_key is not None:
            kept.append(_mend(page, spec, invalid))
            where = f"{window} AND {after_key(spec, month, last_time, last_key)}"
            limit = page_size
            continue
        group = _trailing_null_key_group(times, keys)
        if group == page.num_rows:
            # one (time, null key) group fills the whole page: ask again for a bigger page
            if limit >= MAX_PAGE_SIZE:
                raise IncompleteMonthError(
                    f"more than {MAX_PAGE_SIZE} rows share {spec.month_column} "
                    f"{last_time} and a null {spec.key_column}, so they cannot be paged"
                )
            limit = min(limit * 2, MAX_PAGE_SIZE)
            continue
        # keep the rows before the group; the next page starts with the whole group again
        kept.append(_mend(page.slice(0, page.num_rows - group), spec, invalid))
        where = f"{window} AND {after_key(spec, month, last_time, None)}"
        limit = page_size
    return MonthRows(pa.concat_tables(kept), requests, invalid)


def _mend(page: pa.Table, spec: DatasetSpec, invalid: dict[str, int]) -> pa.Table:
    table, counts = repair_text(page, spec)
    for name, count in counts.items():
        invalid[name] = invalid.get(name, 0) + count
    return table


def _text(value: bytes | None) -> str | None:
    # a cursor value is echoed back to the source; an invalid byte in it cannot be, exactly
    return None if value is None else value.decode("utf-8", "replace")


MAX_PAGE_SIZE = 50_000  # the largest $limit a SODA 2.x endpoint accepts
_FLOATING_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")


def _trailing_null_key_group(times: pa.ChunkedArray, keys: pa.ChunkedArray) -> int:
    """How many rows at the end of a page share its last row's time and a null key."""
    last = times[-1].as_py()
    count = 0
    for index in range(len(keys) - 1, -1, -1):
        if keys[index].is_valid or times[index].as_py() != last:
            break
        count += 1
    return count


def latest_instant(values: pa.ChunkedArray | pa.Array) -> datetime | None:
    """The latest of a column of :updated_at texts, however each is written."""
    instants = [parse_instant(text) for text in pc.unique(values).to_pylist() if text]
    known = [instant for instant in instants if instant is not None]
    return max(known) if known else None


def parse_instant(text: str | None) -> datetime | None:
    """`2026-08-18T09:22:15.735Z`, `...15.735`, `...15`: the same instant, in UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    A month that took more than one page is checked once more after its last page: its count(*)
    and max(:updated_at) now must equal the rows received and their latest :updated_at, or a
    revision landed while it paged. A single page is one consistent answer and needs no second
    check. A mismatch (rows revised mid-fetch, a truncated body) is retried; after `attempts` the
    month fails and nothing is returned, so nothing partial can be written.
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
            fetched = fetch_month_rows(client, spec, month, page_size)
            raw = fetched.table
            keys = raw.column(spec.key_column)
            # repeated keys mean pages overlapped; null keys are counted, not compared
            distinct = pc.count_distinct(keys, mode="only_valid").as_py() + keys.null_count
            problem = ""
            if raw.num_rows != expected or distinct != raw.num_rows:
                problem = (
                    f"received {raw.num_rows} rows ({distinct} distinct {spec.key_column}) "
                    f"but the source counts {expected}"
                )
            elif fetched.pages > 1:
                problem = changed_while_paging(client, spec, month, raw)
            if not problem:
                table, nulled = convert_table(raw, spec)
                for name, count in fetched.invalid_utf8.items():
                    nulled[name] = nulled.get(name, 0) + count
                return MonthData(
                    month=month,
                    table=table,
                    pages=fetched.pages,
                    requests=client.requests_made - before,
                    seconds=time.monotonic() - started,
                    nulled=nulled,
                )
        except IncompleteMonthError as exc:
            problem = str(exc)
        log.warning("month %s attempt %d/%d: %s", month, attempt, attempts, problem)
    raise IncompleteMonthError(
        f"Month {month} could not be fetched completely ({problem}) after {attempts} attempts: "
        "nothing was written for it; run again later."
    )


def changed_while_paging(client: HttpClient, spec: DatasetSpec, month: str, raw: pa.Table) -> str:
    """Why the month's rows as received are not its current state, or "" when they are."""
    now = month_summary(client, spec, month)
    if now.rows != raw.num_rows:
        return f"received {raw.num_rows} rows but after the last page the source counts {now.rows}"
    received = latest_instant(raw.column(UPDATED_AT))
    if parse_instant(now.updated_at) != received:
        latest = received.isoformat() if received else "none"
        return (
            f"the latest {UPDATED_AT} received is {latest} but after the last page the "
            f"source's is {now.updated_at}"
        )
    return ""


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
