"""The seed project's loader, rebuilt from its description as the reference to beat.

What the seed did (../shared/seeds/001_283a45237983f313.txt, ../shared/docs/spd-source.md): one
JSON request per month, sequentially, with `$limit=50000`, through `requests.get` (no session),
`pandas.DataFrame(resp.json())`, `df.astype(str)`, then one Parquet file per month with
`df.to_parquet`. Rebuilt with today's field names and a `$where` on `report_date_time` for the
month's half-open window. The only addition is a generous timeout so a benchmark cannot hang.

    python -m benchmarks.seed_loader --url http://127.0.0.1:PORT --start 2024-11 --end 2026-10 \
        --out benchmarks/work/seed

prints `SEED_RESULT {...}` (JSON: months, rows, bytes, requests, load seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import requests

DATASET_ID = "tazs-3rd5"
TIMEOUT_S = 600  # the seed had none; only here so a broken run ends


def months_between(start: str, end: str) -> list[str]:
    year, month = int(start[:4]), int(start[5:7])
    months = []
    while f"{year:04d}-{month:02d}" <= end:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + 1:04d}-01" if number == 12 else f"{year:04d}-{number + 1:02d}"


def month_params(month: str) -> dict[str, str]:
    where = (
        f"report_date_time >= '{month}-01T00:00:00.000' "
        f"AND report_date_time < '{next_month(month)}-01T00:00:00.000'"
    )
    return {"$limit": "50000", "$where": where}


def load_month(base_url: str, month: str, out_dir: Path) -> tuple[int, int]:
    """One month the seed's way; returns (rows, bytes received)."""
    resp = requests.get(
        f"{base_url}/resource/{DATASET_ID}.json", params=month_params(month), timeout=TIMEOUT_S
    )
    df = pd.DataFrame(resp.json())
    df = df.astype(str)
    df.to_parquet(out_dir / f"seattle_crime_{month}.parquet")
    return len(df), len(resp.content)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_loader", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--start", required=True, help="first month, YYYY-MM")
    parser.add_argument("--end", required=True, help="last month, YYYY-MM")
    parser.add_argument("--out", required=True, help="folder for the Parquet files")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    months = months_between(args.start, args.end)
    rows = received = 0
    started = time.monotonic()
    for month in months:
        month_rows, month_bytes = load_month(args.url.rstrip("/"), month, out_dir)
        rows += month_rows
        received += month_bytes
    seconds = time.monotonic() - started
    result = {
        "months": len(months),
        "rows": rows,
        "bytes": received,
        "requests": len(months),
        "load_s": round(seconds, 3),
    }
    print("SEED_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
