"""The benchmark's source: `python -m tests.socrata` plus one line on stdout per request.

    python -m benchmarks.serve_source --start 2008-01 --end 2026-11 --rows-per-month 7000 ...

Takes the same options as `python -m tests.socrata` and builds the same server. It prints
`SOCRATA_URL=...` only once the rows are indexed and every CSV/JSON row fragment is pre-rendered
(the server's warm-up), then, for each request, `REQ <epoch> <status> <body bytes> <ms> <path>`
(ms: time the server spent computing the answer, before any network model delay), so the
benchmark can count requests and bytes per run and see that the server is not the bottleneck.

With `--prime-page-size N`, it also computes and caches, before printing the URL, the answers to
the per-month queries the pipeline sends (pages of N rows), so a timed run only meets cache
lookups, as it would meet Socrata's own store. (The seed loader's queries have no `$order`; the
fake answers those in a new order every time, as Socrata may, so they are never cached.)
"""

from __future__ import annotations

import sys
import threading
import time

from tests.socrata.__main__ import build_server, parse_args, serve_until, stop_on_signal
from tests.socrata.data import month_range
from tests.socrata.server import Response, SocrataServer


def log_requests(server: SocrataServer) -> None:
    original = server._respond
    lock = threading.Lock()

    def respond(path: str, query: dict[str, str], target: str) -> tuple[Response, str | None]:
        started = time.time()
        response, fault = original(path, query, target)
        computed_ms = (time.time() - started) * 1000
        line = (
            f"REQ {started:.6f} {response.status} {len(response.body)} {computed_ms:.2f} {path}\n"
        )
        with lock:
            sys.stdout.write(line)
            sys.stdout.flush()
        return response, fault

    server._respond = respond  # type: ignore[method-assign]


def prime(server: SocrataServer, months: list[str], page_size: int) -> int:
    """Answer the per-month queries once, into a body cache made big enough to keep them all."""
    from flows.months import UNKNOWN_MONTH
    from flows.sources.socrata import month_where, page_params
    from flows.sources.specs import SPD_CRIME
    from tests.socrata import query

    spec = SPD_CRIME
    queries: list[tuple[str, dict[str, str]]] = []
    for month in [*months, UNKNOWN_MONTH]:
        where = month_where(spec, month)
        # flows.sources.socrata.count_rows and fetch_rows
        queries.append(("json", {"$select": "count(*) AS n", "$where": where}))
        queries.append(("csv", page_params(spec, where, page_size, 0)))
    query.BODY_CACHE_SIZE = max(query.BODY_CACHE_SIZE, len(queries) + 256)
    table = server._table
    for fmt, params in queries:
        query.run_query(table, params, fmt, 0)
    return len(queries)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    page_size = 0
    if "--prime-page-size" in argv:
        at = argv.index("--prime-page-size")
        page_size = int(argv[at + 1])
        del argv[at : at + 2]
    args = parse_args(argv)
    stopping = stop_on_signal()
    started = time.monotonic()
    server = build_server(args)
    log_requests(server)
    url = server.start()
    server.wait_warm()
    if page_size:
        primed = prime(server, month_range(args.start, args.end), page_size)
        print(f"PRIMED_QUERIES={primed}", flush=True)
    print(f"READY_AFTER_S={time.monotonic() - started:.1f}", flush=True)
    print(f"SOCRATA_URL={url}", flush=True)
    serve_until(stopping, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
