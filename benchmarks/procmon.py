"""Run one command as its own process and watch it: wall time, output lines, peak memory, CPU.

Every `interval_s` the process and all its descendants (the Prefect temporary API server the flow
starts is one) are read with psutil; their resident set sizes are summed and the largest sum kept.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class ProcessRun:
    command: list[str]
    returncode: int
    started_at: float  # epoch seconds
    wall_s: float
    peak_rss_tree: int  # bytes, the largest sum over the process tree
    peak_rss_main: int  # bytes, the command's own process
    cpu_main_s: float
    cpu_children_s: float
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, count: int = 15) -> str:
        return "\n".join(self.lines[-count:])


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def run_monitored(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    interval_s: float = 0.1,
    timeout_s: float = 3600.0,
) -> ProcessRun:
    """Run to completion (or kill the tree after `timeout_s`); output is teed to `log_path`."""
    lines: list[str] = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    started = time.monotonic()
    proc = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    assert proc.stdout is not None
    stream = proc.stdout

    def pump() -> None:
        with open(log_path, "w", encoding="utf-8") as sink:
            for line in stream:
                lines.append(line.rstrip("\n"))
                sink.write(line)

    reader = threading.Thread(target=pump, name="output-pump", daemon=True)
    reader.start()
    watched = psutil.Process(proc.pid)
    peak_tree = peak_main = 0
    cpu_seen: dict[int, float] = {}
    while proc.poll() is None:
        if time.monotonic() - started > timeout_s:
            _kill_tree(watched)
            break
        tree = [watched]
        with contextlib.suppress(psutil.Error):
            tree += watched.children(recursive=True)
        total = 0
        for member in tree:
            try:
                rss = member.memory_info().rss
                cpu_seen[member.pid] = _cpu(member)
            except psutil.Error:
                continue
            total += rss
            if member.pid == proc.pid:
                peak_main = max(peak_main, rss)
        peak_tree = max(peak_tree, total)
        time.sleep(interval_s)
    returncode = proc.wait()
    wall_s = time.monotonic() - started
    reader.join(timeout=10)
    cpu_main = cpu_seen.pop(proc.pid, 0.0)
    return ProcessRun(
        command=list(command),
        returncode=returncode,
        started_at=started_at,
        wall_s=wall_s,
        peak_rss_tree=peak_tree,
        peak_rss_main=peak_main,
        cpu_main_s=cpu_main,
        cpu_children_s=sum(cpu_seen.values()),
        lines=lines,
    )


def _kill_tree(proc: psutil.Process) -> None:
    """End the process we started and its descendants (by pid, never by name)."""
    try:
        members = [*proc.children(recursive=True), proc]
    except psutil.Error:
        members = [proc]
    for member in members:
        try:
            member.kill()
        except psutil.Error:
            continue


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the loader's and Prefect's settings, plus `extra`."""
    dropped = ("CRIME_", "PREFECT_", "SOCRATA_", "DBT_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
