"""Each kind of measured run as its own process: the pipeline, dbt, the seed loader, the floor."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.flowlog import DBT_FINISHED, parse_flow_log
from benchmarks.model import BenchConfig, RunRow
from benchmarks.procmon import ProcessRun, clean_env, run_monitored
from benchmarks.profiles import in_load_phase, summarize
from benchmarks.source import SourceProcess


class Runner:
    """Knows the scratch layout and how to start and read every run."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.work = config.work
        self.prefect_home = self.work / "prefect-home"
        self.logs = self.work / "logs"
        self.profiles = self.work / "profiles"
        self.api_url: str | None = None  # a shared Prefect server; None: a temporary one per run
        for folder in (self.prefect_home, self.logs, self.profiles):
            folder.mkdir(parents=True, exist_ok=True)

    # -- environment ------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        env = clean_env(
            {
                "PREFECT_HOME": str(self.prefect_home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            }
        )
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
        return env

    def lake_env(self, lake: str) -> dict[str, str]:
        folder = self.work / lake
        return {
            "CRIME_LAKE_URL": str(folder / "lake"),
            "CRIME_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        }

    def prepare_prefect(self) -> None:
        """Create and migrate the Prefect database once, so no timed run pays for it."""
        prefect = Path(sys.executable).with_name("prefect")
        subprocess.run(
            [str(prefect), "server", "database", "upgrade", "-y"],
            cwd=self.config.repo,
            env=self.base_env(),
            capture_output=True,
            check=True,
            timeout=600,
        )

    def _python(self, key: str, module_args: list[str]) -> list[str]:
        if not self.config.profile:
            return [sys.executable, "-m", *module_args]
        return [
            sys.executable,
            "-m",
            "benchmarks.sampler",
            "--out",
            str(self.profiles / f"{key}.json"),
            "--interval",
            str(self.config.sample_interval_s),
            "-m",
            *module_args,
        ]

    def _run(self, key: str, command: list[str], env: dict[str, str]) -> ProcessRun:
        return run_monitored(
            command,
            env,
            self.config.repo,
            self.logs / f"{key}.log",
            timeout_s=self.config.timeout_s,
        )

    def _profile(self, row: RunRow, load_phase: Callable[[list[str], str], bool] | None) -> None:
        if not self.config.profile:
            return
        path = self.profiles / f"{row.key}.json"
        row.profile = summarize(path)
        if load_phase is not None:
            row.load_profile = summarize(path, within=load_phase)

    # -- runs ---------------------------------------------------------------------------------

    def pipeline(
        self,
        key: str,
        source: SourceProcess,
        lake: str,
        start_month: str,
        end_month: str,
        run_dbt: bool,
        backfill: bool,
    ) -> RunRow:
        """`python -m flows run`, with the lake and warehouse of `lake` under the scratch dir."""
        env = self.base_env()
        env.update(self.lake_env(lake))
        env.update(
            {
                "CRIME_SOURCE_URL": source.url,
                "CRIME_START_MONTH": start_month,
                "CRIME_RUN_DBT": "true" if run_dbt else "false",
            }
        )
        env.update(self.config.pipeline_env)
        args = ["flows", "run", "--end-month", end_month]
        if backfill:
            args += ["--start-month", start_month]
        primed = source.prime_month_counts()
        mark = source.mark()
        proc = self._run(key, self._python(key, args), env)
        traffic = source.traffic_since(mark)
        log = parse_flow_log(proc.lines, proc.started_at)
        row = RunRow(key, wall_s=proc.wall_s, peak_rss=proc.peak_rss_tree)
        row.cpu_s = proc.cpu_main_s + proc.cpu_children_s
        row.requests = traffic.requests
        row.body_bytes = traffic.body_bytes
        row.server_compute_s = traffic.server_compute_s
        if not proc.ok:
            row.status = f"failed: exit {proc.returncode}; see {self.logs / (key + '.log')}"
            row.notes.append(proc.tail(5))
        if log.flow_started_at is not None:
            row.startup_s = log.flow_started_at - proc.started_at
        first = traffic.first_at or log.loading_at
        if first is not None and log.last_month_at is not None:
            row.load_s = log.last_month_at - first
        if log.staging_at is not None and log.last_month_at is not None:
            row.staging_s = log.staging_at - log.last_month_at
        if run_dbt and log.done_at is not None and log.staging_at is not None:
            row.dbt_s = log.done_at - log.staging_at
        if log.done is not None:
            row.months = log.done.months
            row.rows = log.done.rows
            row.flow_s = log.done.seconds
            if log.done.requests != traffic.requests:
                row.notes.append(
                    f"The flow counted {log.done.requests} requests, the server {traffic.requests}"
                )
        if log.dbt_reported_s is not None:
            row.notes.append(
                f"dbt reports {log.dbt_reported_s:.1f} s in {log.dbt_invocations} command(s) "
                "(nodes run, without its start-up and parsing)"
            )
        if primed is not None:
            row.notes.append(
                f"The source's answer to the month-counts aggregate was cached before the run "
                f"(computing it took the fake server {primed:.1f} s)"
            )
        if self.api_url is None:
            row.notes.append(
                f"The flow process alone peaked at {proc.peak_rss_main / 2**20:.0f} MB; CPU "
                f"{proc.cpu_main_s:.1f} s in it, {proc.cpu_children_s:.1f} s in its children "
                "(Prefect's temporary API server)"
            )
        self._profile(row, in_load_phase)
        return row

    def dbt_build(self, key: str, lake: str) -> RunRow:
        """`dbt build` on a backfilled warehouse, as its own process (its own target dir)."""
        folder = self.work / lake
        env = self.base_env()
        env.update(self.lake_env(lake))
        env.update({"CRIME_STAGING_DATASET": "crime_staging", "CRIME_DBT_TARGET": "duckdb"})
        dbt = Path(sys.executable).with_name("dbt")
        project = self.config.repo / "dbt"
        command = [
            str(dbt),
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target",
            "duckdb",
            "--target-path",
            str(folder / "dbt-target"),
            "--log-path",
            str(folder / "dbt-logs"),
        ]
        proc = self._run(key, command, env)
        row = RunRow(key, wall_s=proc.wall_s, dbt_s=proc.wall_s, peak_rss=proc.peak_rss_tree)
        row.cpu_s = proc.cpu_main_s + proc.cpu_children_s
        if not proc.ok:
            row.status = f"failed: exit {proc.returncode}; see {self.logs / (key + '.log')}"
            row.notes.append(proc.tail(5))
        for line in proc.lines:
            found = DBT_FINISHED.search(line)
            if found:
                row.notes.append(
                    f"dbt reports {float(found.group(1)):.1f} s for its models and tests; the "
                    "rest is start-up and parsing"
                )
        return row

    def seed(self, key: str, source: SourceProcess, start: str, end: str) -> RunRow:
        out = self.work / key
        args = ["benchmarks.seed_loader", "--url", source.url, "--start", start, "--end", end]
        args += ["--out", str(out)]
        mark = source.mark()
        proc = self._run(key, self._python(key, args), self.base_env())
        traffic = source.traffic_since(mark)
        row = RunRow(key, wall_s=proc.wall_s, peak_rss=proc.peak_rss_tree)
        row.cpu_s = proc.cpu_main_s + proc.cpu_children_s
        row.requests = traffic.requests
        row.body_bytes = traffic.body_bytes
        row.server_compute_s = traffic.server_compute_s
        result = _result_line(proc, "SEED_RESULT ")
        if not proc.ok or result is None:
            row.status = f"failed: exit {proc.returncode}; see {self.logs / (key + '.log')}"
            row.notes.append(proc.tail(5))
        else:
            row.months = int(result["months"])
            row.rows = int(result["rows"])
            row.load_s = float(result["load_s"])
            row.startup_s = proc.wall_s - row.load_s
        self._profile(row, None)
        return row

    def floor(self, source: SourceProcess, start: str) -> tuple[RunRow, RunRow]:
        """One process: fetch every month from `start` (untimed), then time parse + write."""
        config = self.config
        args = ["benchmarks.floor", "--url", source.url, "--start", start]
        args += ["--end", config.last_month, "--last", str(config.months_short)]
        args += ["--out", str(self.work / "floor")]
        proc = self._run("floor_full", self._python("floor_full", args), self.base_env())
        result = _result_line(proc, "FLOOR_RESULT ")
        short, full = RunRow("floor_short"), RunRow("floor_full")
        for row, part in ((full, "all"), (short, "last")):
            if not proc.ok or result is None:
                row.status = f"failed: exit {proc.returncode}; see {self.logs / 'floor_full.log'}"
                row.notes.append(proc.tail(5))
                continue
            figures = result[part]
            row.months = int(figures["months"])
            row.rows = int(figures["rows"])
            row.load_s = float(figures["seconds"])
            row.body_bytes = int(figures["bytes"])
            row.requests = 0
            row.notes.append("CSV already in memory: no HTTP, no Prefect, one thread")
        self._profile(full, _floor_timed)
        return short, full


def _floor_timed(stack: list[str], thread: str) -> bool:
    timed = any(label.startswith("benchmarks.floor:parse_and_write") for label in stack)
    return timed and not any(label.startswith("benchmarks.floor:warm_up") for label in stack)


def _result_line(proc: ProcessRun, prefix: str) -> dict | None:
    for line in reversed(proc.lines):
        if line.startswith(prefix):
            try:
                parsed = json.loads(line[len(prefix) :])
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None
