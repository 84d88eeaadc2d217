"""The floor: parsing and writing the months with no HTTP and no orchestration.

First (not timed) every month's CSV pages are fetched into memory with exactly the SoQL the
pipeline sends (`flows.sources.socrata.page_params`, same page size). Then, timed, month by
month and on one thread: each page is parsed by the pipeline's own `read_csv_page`, the month's
pages are concatenated and typed by `convert_table`, and the month is written with the lake's
`parquet_bytes_writer` to a file (no fsync, no temp file, no rename). One month is parsed and
written once before timing, so lazy imports and first-call costs are not counted.

    python -m benchmarks.floor --url URL --start 2008-01 --end 2026-10 --last 24 --out DIR

prints `FLOOR_RESULT {...}` for all the months and, with `--last N`, for the last N alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import requests

from flows.lake.layout import parquet_bytes_writer
from flows.months import month_range
from flows.settings import Settings
from flows.sources.casting import convert_table
from flows.sources.socrata import month_where, page_params, read_csv_page
from flows.sources.specs import SPD_CRIME


def fetch_pages(url: str, months: list[str], page_size: int) -> dict[str, list[bytes]]:
    spec = SPD_CRIME
    pages: dict[str, list[bytes]] = {}
    with requests.Session() as session:
        for month in months:
            where = month_where(spec, month)
            offset = 0
            bodies: list[bytes] = []
            while True:
                resp = session.get(
                    f"{url}/resource/{spec.dataset_id}.csv",
                    params=page_params(spec, where, page_size, offset),
                    timeout=600,
                )
                resp.raise_for_status()
                bodies.append(resp.content)
                if read_csv_page(resp.content, spec).num_rows < page_size:
                    break
                offset += page_size
            pages[month] = bodies
    return pages


def parse_and_write(pages: dict[str, list[bytes]], months: list[str], out_dir: Path) -> dict:
    spec = SPD_CRIME
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = body_bytes = 0
    started = time.monotonic()
    for month in months:
        tables = [read_csv_page(body, spec) for body in pages[month]]
        table, _ = convert_table(pa.concat_tables(tables), spec)
        with open(out_dir / f"{month}.parquet", "wb") as sink:
            parquet_bytes_writer(table, sink)
        rows += table.num_rows
        body_bytes += sum(len(body) for body in pages[month])
    seconds = time.monotonic() - started
    return {"months": len(months), "rows": rows, "bytes": body_bytes, "seconds": round(seconds, 3)}


def warm_up(pages: dict[str, list[bytes]], month: str, out_dir: Path) -> None:
    """Untimed: first calls load lazy modules and compile the typing rules' regexes."""
    parse_and_write(pages, [month], out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--last", type=int, default=0, help="also time the last N months alone")
    parser.add_argument("--page-size", type=int, default=Settings().page_size)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    months = month_range(args.start, args.end)
    pages = fetch_pages(args.url.rstrip("/"), months, args.page_size)
    out = Path(args.out)
    warm_up(pages, months[-1], out / "warm-up")
    results = {"all": parse_and_write(pages, months, out / "all")}
    if args.last:
        results["last"] = parse_and_write(pages, months[-args.last :], out / "last")
    print("FLOOR_RESULT " + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
