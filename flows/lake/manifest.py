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
        data = json.loads(text)
        return cls(
            month=data["month"],
            rows=int(data["rows"]),
            fetched_at=data["fetched_at"],
            source_updated_at=data.get("source_updated_at"),
            schema=tuple(data.get("schema", ())),
        )


def entry_for(month: str, table: pa.Table, updated_at_column: str) -> ManifestEntry:
    latest = pc.max(table.column(updated_at_column)).as_py() if table.num_rows else None
    return ManifestEntry(
        month=month,
        rows=table.num_rows,
        fetched_at=datetime.now(tz=UTC).isoformat(timespec="seconds"),
        source_updated_at=format_socrata_utc(latest) if latest is not None else None,
        schema=tuple(f"{field.name}:{field.type}" for field in table.schema),
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


def parse_entries(texts: dict[str, str]) -> dict[str, ManifestEntry]:
    """Entries by month; an unreadable one is dropped, so its month is simply checked again."""
    entries = {}
    for month, text in texts.items():
        try:
            entries[month] = ManifestEntry.from_json(text)
        except (ValueError, KeyError, TypeError):
            continue
    return entries


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
