"""`python -m benchmarks [--quick] [...]`: run every benchmark and write RESULTS.md."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.machine import git_revision, this_machine
from benchmarks.model import FULL_HISTORY_START, ROWS, BenchConfig
from benchmarks.report import render
from benchmarks.suite import run_suite
from benchmarks.targets import evaluate
from flows.errors import ConfigError
from flows.months import last_complete_month, month_range, parse_month

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QUICK_MONTHS_SHORT = 2
QUICK_MONTHS_FULL = 3
QUICK_ROWS_PER_MONTH = 300


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the CI smoke version: 2 and 3 months, small months, network model off",
    )
    parser.add_argument(
        "--months-full",
        type=int,
        help=f"months of the full-history backfill (default: {FULL_HISTORY_START} to the last "
        "complete month)",
    )
    parser.add_argument("--months-short", type=int, default=24, help="the short backfill (24)")
    parser.add_argument("--rows-per-month", type=int, help="rows a month (default 7000)")
    parser.add_argument("--null-rows", type=int, default=5, help="rows with no report time (5)")
    parser.add_argument("--latency", type=float, default=0.5, help="network model delay (0.5 s)")
    parser.add_argument(
        "--bandwidth", type=float, default=5e6, help="network model bytes/s a connection (5e6)"
    )
    parser.add_argument(
        "--last-month", help="last month of the backfills (default: the last complete month)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline setting for every pipeline run, e.g. CRIME_CONCURRENCY=8 (repeatable)",
    )
    parser.add_argument(
        "--prefect-server",
        action="store_true",
        help="run every pipeline run against one Prefect server started for the benchmark, "
        "instead of a temporary one per run (--quick does)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=list(ROWS),
        metavar="RUN",
        help="measure only this run and what it needs first (repeatable): " + ", ".join(ROWS),
    )
    parser.add_argument("--no-profile", action="store_true", help="run without the stack sampler")
    parser.add_argument("--sample-interval", type=float, default=0.01, help="sampler period (s)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="the report to write")
    parser.add_argument(
        "--work", default=str(HERE / "work"), help="scratch folder, wiped first (git-ignored)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    last = parse_month(args.last_month, "--last-month") if args.last_month else None
    last = last or last_complete_month()
    history = len(month_range(FULL_HISTORY_START, last))
    months_short = QUICK_MONTHS_SHORT if args.quick else args.months_short
    months_full = args.months_full or (QUICK_MONTHS_FULL if args.quick else history)
    if months_short < 1 or months_full < months_short:
        raise ConfigError(
            f"--months-full ({months_full}) must be at least --months-short ({months_short}), "
            "which must be at least 1."
        )
    rows = args.rows_per_month or (QUICK_ROWS_PER_MONTH if args.quick else 7000)
    pipeline_env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith(("CRIME_", "PREFECT_")):
            raise ConfigError(f"--env {item!r}: use NAME=VALUE with a CRIME_ or PREFECT_ name.")
        pipeline_env[name] = value
    return BenchConfig(
        quick=args.quick,
        last_month=last,
        months_short=months_short,
        months_full=months_full,
        rows_per_month=rows,
        null_rows=args.null_rows,
        latency_s=args.latency,
        bandwidth=args.bandwidth,
        repo=REPO,
        work=Path(args.work).resolve(),
        out=Path(args.out).resolve(),
        pipeline_env=pipeline_env,
        profile=not args.no_profile,
        shared_prefect_server=args.quick or args.prefect_server,
        only=tuple(args.only),
        sample_interval_s=args.sample_interval,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(build_parser().parse_args(argv))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    suite = run_suite(config)
    targets = evaluate(suite.rows)
    command = shlex.join(["python", "-m", "benchmarks", *argv])
    text = render(config, this_machine(), git_revision(str(REPO)), suite, targets, command)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(text, encoding="utf-8")
    print(f"wrote {config.out}")
    for target in targets:
        print(f"  {target.verdict:>4}  {target.label}: {target.measured}")
    for row in suite.failed:
        print(f"error: {row.label}: {row.status}", file=sys.stderr)
    return 1 if suite.failed else 0
