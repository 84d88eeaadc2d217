"""Run the fake Socrata server in the foreground: `python -m tests.socrata --port 8765 ...`.

Prints one line, `SOCRATA_URL=http://127.0.0.1:PORT`, once it accepts requests, then serves until
SIGTERM or SIGINT and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .data import generate_rows, month_range
from .faults import Faults, NetworkModel
from .server import SocrataServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.socrata", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--start", default="2022-01", help="first month, YYYY-MM")
    parser.add_argument("--end", default="2023-12", help="last month, YYYY-MM, inclusive")
    parser.add_argument("--rows-per-month", type=int, default=7000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--null-rows", type=int, default=0, help="rows with no report_date_time")
    parser.add_argument("--dataset-id", default="tazs-3rd5")
    parser.add_argument("--latency", type=float, default=None, help="seconds before each response")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes per second per body")
    for kind in ("throttle", "error", "accepted", "drop", "truncate", "html"):
        parser.add_argument(f"--{kind}-every", type=int, default=0, help="every Nth data request")
    return parser.parse_args(argv)


def build_server(args: argparse.Namespace) -> SocrataServer:
    rows = generate_rows(
        month_range(args.start, args.end), args.rows_per_month, args.seed, args.null_rows
    )
    network = None
    if args.latency is not None or args.bandwidth is not None:
        defaults = NetworkModel()
        network = NetworkModel(
            latency_s=defaults.latency_s if args.latency is None else args.latency,
            bandwidth_bytes_per_s=(
                defaults.bandwidth_bytes_per_s if args.bandwidth is None else args.bandwidth
            ),
        )
    faults = Faults(
        throttle_every=args.throttle_every,
        error_every=args.error_every,
        accepted_every=args.accepted_every,
        drop_every=args.drop_every,
        truncate_every=args.truncate_every,
        html_every=args.html_every,
    )
    return SocrataServer(
        rows, dataset_id=args.dataset_id, faults=faults, network=network, port=args.port
    )


def stop_on_signal() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a server can stop cleanly and exit 0."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stopping


def serve_until(stopping: threading.Event, server: SocrataServer) -> None:
    try:
        # a timed wait keeps the main thread responsive to signals
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stopping = stop_on_signal()
    server = build_server(args)
    url = server.start()
    print(f"SOCRATA_URL={url}", flush=True)
    serve_until(stopping, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
