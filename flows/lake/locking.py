"""One run at a time per lake: an OS file lock that the kernel releases when the holder dies.

A crashed or killed run can never leave the lake locked, and a second run (scheduled, from the
UI or the CLI) waits or is refused with a sentence naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flows.errors import PipelineError


class LakeBusyError(PipelineError):
    """Another run holds the lake."""


@contextmanager
def file_lock(path: str, wait_s: float = 0.0, poll_s: float = 1.0) -> Iterator[None]:
    """Hold an exclusive flock on `path` for the block; wait up to `wait_s` for it."""
    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakeBusyError(
                        f"Another run is loading this lake ({_describe_holder(lock_path)}): "
                        "wait for it to finish, or raise CRIME_LOCK_WAIT to queue behind it."
                    ) from None
                time.sleep(poll_s)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _describe_holder(lock_path: Path) -> str:
    try:
        holder = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return f"lock {lock_path}"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
