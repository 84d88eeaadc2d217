"""The machine a benchmark ran on, as one line for RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata

import psutil

PACKAGES = ("prefect", "pyarrow", "pandas", "duckdb", "dbt-core", "dbt-duckdb", "requests")


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory_gb: float
    python: str
    os: str
    packages: str

    def describe(self) -> str:
        return (
            f"{self.cpu}, {self.cores} cores, {self.memory_gb:.0f} GB memory; "
            f"Python {self.python}; {self.os}"
        )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
                    return f"{pretty}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def git_revision(repo: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    revision = out.stdout.strip() or "unknown"
    return revision + (" with uncommitted changes" if dirty.stdout.strip() else "")


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def this_machine() -> Machine:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return Machine(
        cpu=cpu_model(),
        cores=psutil.cpu_count(logical=True) or 0,
        memory_gb=psutil.virtual_memory().total / 2**30,
        python=platform.python_version(),
        os=os_name(),
        packages=", ".join(versions),
    )
