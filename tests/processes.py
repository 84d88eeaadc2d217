"""Stopping the local servers the tests start: only our own processes, by their pid."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, timeout_s: float) -> None:
    """Terminate, then kill if it has not gone in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
