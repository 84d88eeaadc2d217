"""A real `prefect server` on a free loopback port, started and stopped by process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CRIME_"))}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "flows",
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGINT first (a clean shutdown), then SIGKILL; only this process group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class PrefectServer:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.log_path = home / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> PrefectServer:
        env = prefect_env(self.home)
        env["PREFECT_UI_API_URL"] = self.api_url
        # schedule runs quickly after a deployment appears, instead of the 60 s default loop
        env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "2"
        log = open(self.log_path, "wb")  # noqa: SIM115 (the server writes to it until stopped)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.api_url}/health", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"prefect server not healthy after {timeout}s: {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        # a busy server (sqlite locked under load) answers 503: ask again, as prefect's client does
        for _ in range(10):
            resp = requests.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
            if resp.status_code != 503:
                return resp
            time.sleep(1)
        return resp
