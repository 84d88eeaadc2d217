"""`make demo`: the whole pipeline, offline, against the local Socrata-compatible test server.

It generates SPD-like months, serves them on 127.0.0.1, points the loader at that server and
runs `python -m flows run` and `status` with a lake and warehouse under data/demo/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from flows.months import add_months, month_range
from tests.socrata import SocrataServer, generate_rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__)
    parser.add_argument("--end-month", default="2025-12", help="last month served (YYYY-MM)")
    parser.add_argument("--months", type=int, default=24, help="how many months to serve")
    parser.add_argument("--rows-per-month", type=int, default=7000)
    parser.add_argument("--data-dir", default="data/demo", help="where the lake and DuckDB go")
    args = parser.parse_args(argv)

    start = add_months(args.end_month, 1 - args.months)
    months = month_range(start, args.end_month)
    rows = generate_rows(months, args.rows_per_month, seed=7, null_report_rows=5)
    with SocrataServer(rows) as server:
        url = server.start()
        print(f"demo source: {len(rows)} rows over {len(months)} months at {url}", flush=True)
        os.environ.update(
            {
                "CRIME_SOURCE_URL": url,
                "CRIME_LAKE_URL": os.path.join(args.data_dir, "lake"),
                "CRIME_DUCKDB_PATH": os.path.join(args.data_dir, "warehouse.duckdb"),
                "CRIME_START_MONTH": start,
            }
        )
        from flows.cli import main as cli

        started = time.monotonic()
        code = cli(["run", "--start-month", start, "--end-month", args.end_month])
        print(f"demo run finished in {time.monotonic() - started:.1f}s with exit code {code}")
        if code == 0:
            cli(["status", "--start-month", start, "--end-month", args.end_month])
            print_marts(os.environ["CRIME_DUCKDB_PATH"])
    return code


def print_marts(duckdb_path: str) -> None:
    import duckdb

    with duckdb.connect(duckdb_path) as con:
        total = con.execute("select count(*) from crime_marts.fct_crimes").fetchone()
        print(f"fct_crimes: {total[0] if total else 0} rows in {duckdb_path}")
        trend = con.execute(
            "select crime_class, sum(offense_count) from crime_marts.rpt_crime_trend_monthly "
            "group by crime_class order by crime_class"
        ).fetchall()
        print("offenses by class: " + ", ".join(f"{cls}={n}" for cls, n in trend))


if __name__ == "__main__":
    sys.exit(main())
