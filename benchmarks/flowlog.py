"""What a `python -m flows run` printed: the phase boundaries and the run summary, timestamped.

Prefect's console lines start `HH:MM:SS.mmm | LEVEL | ...` in local time, stamped when the record
was made (not when it reached us). The lines used:
  `Beginning flow run ...`                     the flow starts (process start-up ends)
  `loading N month(s) ...` or `N month(s) differ from the source: fetching them ...`
                                               the plan is made, months are about to be fetched
  `<month> (<reason>): N rows in P page(s) ...` one month written
  `progress: N/N months done`                  the last month is written
  `staging <schema>.<table> shows N rows`      the staging view is rebuilt
  `Finished running ... (X s).`                dbt's own timing, one per dbt command
  `done: M month(s), R rows, F failed, Q requests, T s`
A missing line leaves its field None instead of failing the benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) \| (\w+)\s*\| (.*)$")
BEGIN = re.compile(r"Beginning flow run")
MONTHS = re.compile(r"(\d+) month\(s\)")
MONTH_DONE = re.compile(r" - (\d{4}-\d{2}|unknown) \([^)]*\): (\d+) rows in (\d+) page")
PROGRESS = re.compile(r"progress: (\d+)/(\d+) months done")
STAGING = re.compile(r"staging \S+ shows (\d+) rows")
DBT_FINISHED = re.compile(r"Finished running .*\(([\d.]+)s\)\.")
DONE = re.compile(r"done: (\d+) month\(s\), (\d+) rows, (\d+) failed, (\d+) requests, ([\d.]+)s")


@dataclass(frozen=True)
class DoneLine:
    months: int
    rows: int
    failed: int
    requests: int
    seconds: float


@dataclass
class FlowLog:
    flow_started_at: float | None = None
    loading_at: float | None = None
    months_planned: int | None = None
    months_written: int = 0
    last_month_at: float | None = None
    staging_at: float | None = None
    staging_rows: int | None = None
    dbt_reported_s: float | None = None
    dbt_invocations: int = 0
    done_at: float | None = None
    done: DoneLine | None = None
    errors: int = 0


def _stamp(match: re.Match[str], anchor: float) -> float:
    """Epoch seconds of a local HH:MM:SS.mmm, on the day of `anchor` (or the next one)."""
    day = datetime.fromtimestamp(anchor).replace(hour=0, minute=0, second=0, microsecond=0)
    hours, minutes, seconds, millis = (int(match.group(i)) for i in range(1, 5))
    moment = day + timedelta(hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis)
    stamp = moment.timestamp()
    if stamp < anchor - 60:  # the run crossed midnight
        stamp += 86_400
    return stamp


def _is_plan(message: str) -> bool:
    """The line that announces the months about to be fetched (its wording has changed)."""
    return "month(s)" in message and ("loading" in message or "fetching" in message)


def parse_flow_log(lines: Iterable[str], anchor: float) -> FlowLog:
    """Read a run's console output; `anchor` is the epoch the process started."""
    log = FlowLog()
    progress_at: float | None = None
    month_at: float | None = None
    for raw in lines:
        line = ANSI.sub("", raw)
        match = LINE.match(line)
        if match is None:
            continue
        at = _stamp(match, anchor)
        level, message = match.group(5), match.group(6)
        if level in ("ERROR", "CRITICAL"):
            log.errors += 1
        if log.flow_started_at is None and BEGIN.search(message):
            log.flow_started_at = at
        elif _is_plan(message) and (found := MONTHS.search(message)):
            log.loading_at = at
            log.months_planned = int(found.group(1))
        elif MONTH_DONE.search(message):
            log.months_written += 1
            month_at = at
        elif (found := PROGRESS.search(message)) and found.group(1) == found.group(2):
            progress_at = at
        elif found := STAGING.search(message):
            log.staging_at = at
            log.staging_rows = int(found.group(1))
        elif found := DBT_FINISHED.search(message):
            # one line per dbt invocation (build, then source freshness): add them up
            log.dbt_reported_s = (log.dbt_reported_s or 0.0) + float(found.group(1))
            log.dbt_invocations += 1
        elif found := DONE.search(message):
            log.done_at = at
            log.done = DoneLine(
                int(found.group(1)),
                int(found.group(2)),
                int(found.group(3)),
                int(found.group(4)),
                float(found.group(5)),
            )
    log.last_month_at = progress_at or month_at or log.loading_at
    return log
