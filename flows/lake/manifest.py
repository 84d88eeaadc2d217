"""The lake's record of each month: what was written, when, and how fresh the source was.

An entry is written only after its month's data file is in place, so it never claims more than
the lake holds. Entries live beside the dataset, not inside it, so no reader's glob sees them:
    <lake>/_manifest/<dataset>/<month>.json
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from flows.lake.layout import MonthFooter, schema_strings

MANIFEST_DIR = "_manifest"


@dataclass(frozen=True)
class ManifestEntry:
    month: str
    rows: int
    fetched_at: str
    # the latest :updated_at among the month's rows, exactly as the source wrote it
    source_updated_at: str | None
    schema: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ManifestEntry:
        """The entry an entry_for(...).to_json() text holds; ValueError for anything else.

        Strict: rows must be a non-negative JSON integer (not 1e400, -3, 12.5, "12" or true),
        the text must have decoded as UTF-8 (no U+FFFD from a lenient decode), and every field
        must have the type the writer gives it.
        """
        if "\ufffd" in text:
            raise ValueError("not valid UTF-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        except RecursionError:
            raise ValueError("not JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        month, rows, fetched_at = data.get("month"), data.get("rows"), data.get("fetched_at")
        updated, schema = data.get("source_updated_at"), data.get("schema", [])
        if not isinstance(month, str):
            raise ValueError("month is missing or not text")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError(f"rows is {rows!r}, not a whole number of 0 or more")
        if not isinstance(fetched_at, str):
            raise ValueError("fetched_at is missing or not text")
        if updated is not None and not isinstance(updated, str):
            raise ValueError("source_updated_at is not text")
        if not isinstance(schema, list) or not all(isinstance(c, str) for c in schema):
            raise ValueError("schema is not a list of column names and types")
        return cls(
            month=month,
            rows=rows,
            fetched_at=fetched_at,
            source_updated_at=updated,
            schema=tuple(schema),
        )


def entry_for(month: str, table: pa.Table, updated_at_column: str) -> ManifestEntry:
    latest = pc.max(table.column(updated_at_column)).as_py() if table.num_rows else None
    return ManifestEntry(
        month=month,
        rows=table.num_rows,
        fetched_at=datetime.now(tz=UTC).isoformat(timespec="seconds"),
        source_updated_at=format_socrata_utc(latest) if latest is not None else None,
        schema=schema_strings(table.schema),
    )


def format_socrata_utc(moment: datetime) -> str:
    """2024-05-02T10:11:12.345Z: the form Socrata writes :updated_at in, so they compare as text."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_socrata_utc(text: str | None) -> datetime | None:
    """A Socrata fixed timestamp ('...Z', with or without fraction) as an aware datetime."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_entries(texts: dict[str, str]) -> tuple[dict[str, ManifestEntry], dict[str, str]]:
    """Entries by month, and for each unreadable one why: an unreadable entry is as good as
    none, so its month is checked in full against the source. Never raises for a bad text."""
    entries: dict[str, ManifestEntry] = {}
    problems: dict[str, str] = {}
    for month, text in texts.items():
        try:
            entry = ManifestEntry.from_json(text)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            problems[month] = _short(exc)
            continue
        if entry.month != month:
            problems[month] = f"it names month {entry.month!r}"
            continue
        entries[month] = entry
    return entries, problems


def parse_entries(texts: dict[str, str]) -> dict[str, ManifestEntry]:
    """Entries by month; an unreadable one is dropped, so its month is simply checked again."""
    return read_entries(texts)[0]


def footer_disagreement(entry: ManifestEntry, footer: MonthFooter) -> str | None:
    """In a few words, how a month file's footer disagrees with its manifest entry (or that it
    could not be read at all), or None when it agrees.

    The schema is compared only when the entry records one (entries always have since the
    manifest was introduced; an empty one is read as "not recorded")."""
    if footer.problem is not None:
        return "unreadable"
    if footer.rows != entry.rows:
        return f"{footer.rows} rows, manifest says {entry.rows}"
    if entry.schema and footer.schema != entry.schema:
        return "schema differs from manifest"
    return None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def manifest_table(entries: Sequence[ManifestEntry]) -> pa.Table:
    """The lake's manifest as rows, so dbt can hold the fact table to it."""
    return pa.table(
        {
            "report_month": pa.array([e.month for e in entries], pa.string()),
            "row_count": pa.array([e.rows for e in entries], pa.int64()),
            "fetched_at": pa.array([e.fetched_at for e in entries], pa.string()),
            "source_updated_at": pa.array([e.source_updated_at for e in entries], pa.string()),
        }
    )
