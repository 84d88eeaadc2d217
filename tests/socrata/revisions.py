"""Publisher revisions of one month, to fire between two pages with `SocrataServer.after_page`.

    revision = Revision("2024-03", delete_earliest=5, add_latest=5)
    server.after_page(1, revision, where_contains="2024-03-01T00:00:00.000")

"Earliest" is the order the pipeline pages a month in: report_date_time, then offense_id as
text, nulls last (the `unknown` month: offense_id alone). New rows copy a row of the month
with a fresh offense_id and `:id`; the server stamps them and edited rows with `:updated_at`
= now, as Socrata does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .data import Row, month_of

if TYPE_CHECKING:
    from .server import SocrataServer

UNKNOWN = "unknown"
_FRESH_IDS = itertools.count(1)


def paging_order(row: Row) -> tuple[bool, str, bool, str]:
    """The pipeline's page order with Socrata's nulls-last, as a sort key."""
    time, key = row.get("report_date_time"), row.get("offense_id")
    return (time is None, time or "", key is None, key or "")


def month_rows(rows: list[Row], month: str) -> list[Row]:
    """The rows of one month ('unknown': no report time), in paging order."""
    wanted = None if month == UNKNOWN else month
    return sorted((row for row in rows if month_of(row) == wanted), key=paging_order)


@dataclass
class Revision:
    """Delete, edit and add rows of one month in one publish, when called with the server."""

    month: str
    delete_earliest: int = 0
    edit_earliest: int = 0  # the rows right after the deleted ones get a new classification
    add_earliest: int = 0  # new rows in the month's first minutes
    add_latest: int = 0  # new rows in the month's last hour
    deleted: list[str | None] = field(default_factory=list)
    edited: list[str | None] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def __call__(self, server: SocrataServer) -> None:
        current = server.rows
        ordered = month_rows(current, self.month)
        gone = ordered[: self.delete_earliest]
        changed = ordered[self.delete_earliest : self.delete_earliest + self.edit_earliest]
        template = ordered[-1] if ordered else current[0]
        taken = {row["offense_id"] for row in current}
        new = [self._new_row(template, taken, n, early=True) for n in range(self.add_earliest)]
        new += [self._new_row(template, taken, n, early=False) for n in range(self.add_latest)]
        edits = {row[":id"]: {**row, "offense_category": _other_category(row)} for row in changed}
        gone_ids = {row[":id"] for row in gone}
        revised = [edits.get(row[":id"], row) for row in current if row[":id"] not in gone_ids]
        server.set_rows([*revised, *new])
        self.deleted += [row["offense_id"] for row in gone]
        self.edited += [row["offense_id"] for row in changed]
        self.added += [str(row["offense_id"]) for row in new]

    def _new_row(self, template: Row, taken: set[str | None], index: int, early: bool) -> Row:
        offense_id = _fresh_offense_id(taken)
        row: Row = {**template, "offense_id": offense_id, ":id": None}
        row[":created_at"] = row[":updated_at"] = None
        if self.month != UNKNOWN:
            start = datetime.fromisoformat(f"{self.month}-01T00:00:00")
            end = (start + timedelta(days=32)).replace(day=1)
            if early:
                moment = start + timedelta(seconds=41 * index)
            else:
                moment = end - timedelta(seconds=37 * (index + 1))
            row["report_date_time"] = moment.isoformat(timespec="milliseconds")
        return row


def _fresh_offense_id(taken: set[str | None]) -> str:
    # generated ids are below 10,000,000; these are above, and never reused
    while True:
        candidate = str(10_000_000 + next(_FRESH_IDS))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _other_category(row: Row) -> str:
    return "ALL OTHER" if row.get("offense_category") != "ALL OTHER" else "PROPERTY CRIME"
