"""One Prefect API server for every pipeline run, instead of a temporary one per run.

By default each `python -m flows run` starts (and stops) its own temporary Prefect API, as
`make run` does; that costs several seconds per run. `--quick` and `--prefect-server` start one
`prefect server start` for the whole benchmark instead, as a served deployment would have.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrefectServer:
    def __init__(self, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> str:
        prefect = Path(sys.executable).with_name("prefect")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as sink:
            self._proc = subprocess.Popen(
                [
                    str(prefect),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-services",
                    "--no-ui",
                ],
                cwd=self.cwd,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {self.log_path}")
            try:
                if requests.get(f"{self.api_url}/health", timeout=2).ok:
                    return self.api_url
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"prefect server was not up in {timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=30)
