"""The benchmark's configuration and each run's figures, shared by the runner and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.profiles import ProfileSummary
from flows.months import add_months, month_range

FULL_HISTORY_START = "2008-01"

# row keys, in table order, with their labels (the smoke test checks every label is written)
ROWS: dict[str, str] = {
    "pipeline_short_on": "Short backfill, network on: pipeline",
    "seed_short_on": "Short backfill, network on: seed loader",
    "pipeline_short_off": "Short backfill, network off: pipeline",
    "seed_short_off": "Short backfill, network off: seed loader",
    "floor_short": "Short backfill: floor (in-memory CSV, parse + write)",
    "dbt_short": "Short backfill: dbt build",
    "pipeline_full": "Full-history backfill, network off: pipeline",
    "floor_full": "Full-history backfill: floor (in-memory CSV, parse + write)",
    "dbt_full": "Full-history backfill: dbt build",
    "monthly_short": "Monthly run (1 new month), short lake",
    "monthly_full": "Monthly run (1 new month), full-history lake",
    "nochange_full": "No-change run, full-history lake",
}

TARGETS: dict[str, str] = {
    "speedup": "Load phase, short backfill, network on: >= 5x faster than the seed loader",
    "floor": "Full-history backfill, network off: <= 3x the floor",
    "memory": "Peak memory (process tree) of every backfill < 1 GB",
    "memory_ratio": "Peak memory, full-history / short backfill <= 1.3",
    "nochange": "No-change run: <= 3 requests to the source",
    "monthly": "Monthly run, full-history lake / short lake <= 1.2",
}


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    last_month: str  # the last complete month; backfills end here
    months_short: int
    months_full: int
    rows_per_month: int
    null_rows: int
    latency_s: float
    bandwidth: float
    repo: Path
    work: Path
    out: Path
    pipeline_env: dict[str, str] = field(default_factory=dict)
    profile: bool = True
    shared_prefect_server: bool = False  # one `prefect server start` instead of one per run
    only: tuple[str, ...] = ()  # row keys to measure (and what they need); empty: all
    sample_interval_s: float = 0.01
    timeout_s: float = 3600.0

    @property
    def short_start(self) -> str:
        return add_months(self.last_month, 1 - self.months_short)

    @property
    def full_start(self) -> str:
        return add_months(self.last_month, 1 - self.months_full)

    @property
    def new_month(self) -> str:
        """The month the monthly runs add: one after the backfills' last."""
        return add_months(self.last_month, 1)

    def short_months(self) -> list[str]:
        return month_range(self.short_start, self.last_month)

    def full_months(self) -> list[str]:
        return month_range(self.full_start, self.last_month)


@dataclass
class RunRow:
    key: str
    status: str = "ok"  # "ok", "skipped: why", "failed: why"
    months: int | None = None
    rows: int | None = None
    wall_s: float | None = None
    startup_s: float | None = None
    load_s: float | None = None
    staging_s: float | None = None
    dbt_s: float | None = None
    flow_s: float | None = None  # the flow's own `done: ... T s`
    requests: int | None = None
    body_bytes: int | None = None
    peak_rss: int | None = None
    cpu_s: float | None = None
    server_compute_s: float | None = None
    notes: list[str] = field(default_factory=list)
    profile: ProfileSummary | None = None  # the whole process
    load_profile: ProfileSummary | None = None  # its load phase (or the floor's timed part)

    @property
    def label(self) -> str:
        return ROWS[self.key]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or not self.load_s:
            return None
        return self.rows / self.load_s


@dataclass(frozen=True)
class TargetResult:
    key: str
    measured: str
    verdict: str  # "pass", "miss", "n/a"
    detail: str

    @property
    def label(self) -> str:
        return TARGETS[self.key]
