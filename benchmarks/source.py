"""The source server as a separate process: started, warmed, its request log read, stopped."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from benchmarks.procmon import clean_env


@dataclass(frozen=True)
class RequestRecord:
    at: float  # epoch seconds when the server received it
    status: int
    body_bytes: int
    compute_ms: float
    path: str


@dataclass(frozen=True)
class Traffic:
    requests: int
    body_bytes: int
    first_at: float | None
    server_compute_s: float


@dataclass(frozen=True)
class SourceSpec:
    start: str
    end: str
    rows_per_month: int
    null_rows: int
    latency_s: float | None  # None: network model off
    bandwidth: float | None
    seed: int = 7
    prime_page_size: int = 0  # >0: pre-answer the per-month queries for this page size

    @property
    def network(self) -> bool:
        return self.latency_s is not None


class SourceProcess:
    """`python -m benchmarks.serve_source ...` (tests.socrata's server) in its own process."""

    def __init__(self, spec: SourceSpec, repo: Path, log_path: Path) -> None:
        self.spec = spec
        self.repo = repo
        self.log_path = log_path
        self.url = ""
        self.ready_after_s = 0.0
        self.primed_queries = 0
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        spec = self.spec
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.serve_source",
            "--port",
            "0",
            "--start",
            spec.start,
            "--end",
            spec.end,
            "--rows-per-month",
            str(spec.rows_per_month),
            "--null-rows",
            str(spec.null_rows),
            "--seed",
            str(spec.seed),
        ]
        if spec.latency_s is not None:
            cmd += ["--latency", str(spec.latency_s)]
        if spec.bandwidth is not None:
            cmd += ["--bandwidth", str(spec.bandwidth)]
        if spec.prime_page_size:
            cmd += ["--prime-page-size", str(spec.prime_page_size)]
        return cmd

    def start(self) -> None:
        """Start generating; `wait_ready` blocks until it serves."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.repo,
            env=clean_env({}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self._reader = threading.Thread(target=self._pump, name="source-log", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as sink:
            for line in self._proc.stdout:
                if line.startswith("REQ "):
                    parts = line.split(maxsplit=5)
                    record = RequestRecord(
                        float(parts[1]), int(parts[2]), int(parts[3]), float(parts[4]), parts[5]
                    )
                    with self._lock:
                        self.records.append(record)
                    continue
                sink.write(line)
                sink.flush()
                if line.startswith("PRIMED_QUERIES="):
                    self.primed_queries = int(line.split("=", 1)[1])
                elif line.startswith("READY_AFTER_S="):
                    self.ready_after_s = float(line.split("=", 1)[1])
                elif line.startswith("SOCRATA_URL="):
                    self.url = line.split("=", 1)[1].strip()
                    self._ready.set()

    def wait_ready(self, timeout_s: float = 900.0) -> str:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.5):
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"the source server exited; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the source server was not ready in {timeout_s:.0f}s")
        # a warm-up request: the connection path and the metadata answer are exercised once
        requests.get(f"{self.url}/api/views/tazs-3rd5.json", timeout=60).raise_for_status()
        return self.url

    def prime_month_counts(self) -> float | None:
        """Send the pipeline's one aggregate request (every month's count and latest update),
        untimed, so the server's answer is cached before a timed run.

        The fake server groups 1.6 million rows in pure Python for it (seconds), where Socrata
        answers from its own store; uncached, it would make the server the bottleneck.
        Returns the seconds it took, or None when the pipeline has no such request.
        """
        try:
            from flows.sources.http import HttpClient
            from flows.sources.socrata import source_months
            from flows.sources.specs import SPD_CRIME
        except ImportError:
            return None
        client = HttpClient(self.url)
        started = time.monotonic()
        try:
            source_months(client, SPD_CRIME.with_source(self.url, SPD_CRIME.dataset_id))
        finally:
            client.close()
        return time.monotonic() - started

    def mark(self) -> int:
        with self._lock:
            return len(self.records)

    def traffic_since(self, mark: int) -> Traffic:
        time.sleep(0.2)  # the last REQ lines may still be in the pipe
        with self._lock:
            window = self.records[mark:]
        return Traffic(
            requests=len(window),
            body_bytes=sum(r.body_bytes for r in window),
            first_at=min((r.at for r in window), default=None),
            server_compute_s=sum(r.compute_ms for r in window) / 1000,
        )

    def rss_bytes(self) -> int:
        if self._proc is None:
            return 0
        try:
            return int(psutil.Process(self._proc.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)
        if self._reader is not None:
            self._reader.join(timeout=10)
