"""`python -m flows run|status`: the pipeline from a terminal, with one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from flows.deploy import DEFAULT_CRON, DEFAULT_TIMEZONE, DEPLOYMENT_NAME
from flows.errors import ConfigError, PipelineError
from flows.months import UNKNOWN_MONTH, add_months, month_range


def _prepare_environment() -> None:
    # before prefect is imported: quiet, offline-safe defaults that a user's env can override
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "flows")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows",
        description="Load Seattle Police Department crime data into a lake and a warehouse.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the parent_process_data flow once")
    run.add_argument("--start-month", help="first month, YYYY-MM (default CRIME_START_MONTH)")
    run.add_argument("--end-month", help="last month, YYYY-MM (default: last complete month)")
    run.add_argument(
        "--refresh-months",
        type=int,
        help="trailing months to fetch again even if unchanged (default CRIME_REFRESH_MONTHS, 0)",
    )
    run.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="YYYY-MM",
        help="fetch this month again whatever the lake holds (repeatable)",
    )
    run.add_argument(
        "--full-refresh", action="store_true", help="fetch every month in the range again"
    )
    serve = commands.add_parser(
        "serve", help="serve the monthly deployment from this process (Ctrl-C stops it)"
    )
    serve.add_argument(
        "--cron", default=DEFAULT_CRON, help=f"schedule (default {DEFAULT_CRON!r}: 8 am on the 1st)"
    )
    serve.add_argument(
        "--timezone", default=DEFAULT_TIMEZONE, help=f"time zone of the cron ({DEFAULT_TIMEZONE})"
    )
    serve.add_argument("--name", default=DEPLOYMENT_NAME, help="deployment name")
    serve.add_argument("--paused", action="store_true", help="create the schedule paused")
    status = commands.add_parser("status", help="show the months in the lake and what is missing")
    status.add_argument("--start-month", help="first month expected (default CRIME_START_MONTH)")
    status.add_argument("--end-month", help="last month expected (default: last complete month)")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from flows.plan import validate_params
    from flows.settings import load_settings

    settings = load_settings()
    # fail on a bad parameter before any engine starts or anything is touched, and hand the
    # flow the validated values (stripped, ascii), never the raw text
    params = validate_params(
        args.start_month or settings.start_month,
        args.end_month,
        settings.refresh_months if args.refresh_months is None else args.refresh_months,
        args.force,
        args.full_refresh,
    )
    from prefect.exceptions import ParameterTypeError

    from flows.flow import parent_process_data
    from flows.interrupt import start_shielded_temporary_server

    start_shielded_temporary_server()

    try:
        result = parent_process_data(
            start_month=params.start_month if args.start_month else None,
            end_month=params.end_month if args.end_month else None,
            refresh_months=args.refresh_months,
            force_months=list(params.force_months) or None,
            full_refresh=args.full_refresh,
        )
    except ParameterTypeError as exc:
        raise ConfigError(parameter_sentence(exc)) from None
    print(
        f"loaded {len(result['months'])} month(s), {result['rows_loaded']} rows; "
        f"warehouse staging shows {result['staging_rows']} rows ({result['seconds']}s)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.deploy import ServeOptions, serve, validate_serve_options
    from flows.settings import load_settings

    load_settings()  # a bad setting fails here, not in every scheduled run
    options = validate_serve_options(
        ServeOptions(name=args.name, cron=args.cron, timezone=args.timezone, paused=args.paused)
    )
    serve(options)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from flows.lake import open_lake
    from flows.lake.manifest import parse_entries
    from flows.plan import validate_params
    from flows.settings import load_settings
    from flows.sources.specs import SPD_CRIME

    settings = load_settings()
    params = validate_params(args.start_month or settings.start_month, args.end_month, 0, ())
    lake = open_lake(settings, SPD_CRIME)
    present = lake.months()
    manifest = parse_entries(lake.manifest_texts())
    wanted = set(month_range(params.start_month, params.end_month))
    print(f"lake: {lake.root}")
    total = 0
    for month in sorted(present):
        entry = manifest.get(month)
        if entry:
            rows = entry.rows
        else:
            try:
                rows = lake.row_count(month)
            except (OSError, ValueError) as exc:  # arrow's errors for a damaged file
                print(f"  {month}  unreadable ({exc}): the next run fetches it again")
                continue
        total += rows
        detail = (
            f"fetched {entry.fetched_at}, source updated {entry.source_updated_at or '-'}"
            if entry
            else "no manifest: checked in full on the next run"
        )
        note = "" if month in wanted or month == UNKNOWN_MONTH else "  (outside the range)"
        print(f"  {month}  {rows:>8} rows  {detail}{note}")
    missing = sorted(wanted - present)
    print(f"{len(present)} partition(s), {total} rows")
    if missing:
        print(
            f"missing {len(missing)} month(s) from {params.start_month} to {params.end_month}: "
            f"{_ranges(missing)}"
        )
    else:
        print(f"nothing missing from {params.start_month} to {params.end_month}")
    return 0


def parameter_sentence(exc: Exception) -> str:
    """Prefect's ParameterTypeError (a header and one line per bad parameter) as one sentence."""
    lines = [line.strip(" -") for line in str(exc).splitlines()[1:] if line.strip(" -")]
    problems = "; ".join(lines) or str(exc)
    return (
        f"The flow refused its parameters ({problems}): use YYYY-MM months, a refresh_months "
        "of 0 or more, and see `python -m flows run --help`."
    )


def _ranges(months: list[str]) -> str:
    """2020-01..2020-04, 2021-07: consecutive months folded into spans."""
    spans: list[list[str]] = []
    for month in months:
        if spans and add_months(spans[-1][-1], 1) == month:
            spans[-1].append(month)
        else:
            spans.append([month])
    return ", ".join(s[0] if len(s) == 1 else f"{s[0]}..{s[-1]}" for s in spans)


def main(argv: Sequence[str] | None = None) -> int:
    _prepare_environment()
    args = build_parser().parse_args(argv)
    from flows.interrupt import Terminated, install_sigterm_handler, stop_temporary_server

    install_sigterm_handler()
    handlers = {"run": cmd_run, "serve": cmd_serve, "status": cmd_status}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        code, message = 2, f"error: {exc}"
    except PipelineError as exc:
        code, message = 1, f"error: {exc}"
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        code = 143 if terminated else 130
        message = (
            f"{'terminated' if terminated else 'interrupted'}: the months already written are "
            "whole and the warehouse keeps its last good build; run again to finish."
        )
    # the temporary server's own goodbye line comes before ours, so ours is the last line
    stop_temporary_server()
    print(message, file=sys.stderr)
    return code
