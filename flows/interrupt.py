"""Stopping a run without losing anything: signals become exceptions, and months write through
a gate that, once closed, lets the writes in progress finish and refuses every later one, so
the lake lock is released only when nothing can write any more."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from flows.errors import RunStopped


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup
    runs (the lock, Prefect's temporary server) instead of the process dying mid-write."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def install_sigterm_handler() -> None:
    """SIGTERM raises Terminated. Prefect's flow engine restores this handler and re-sends the
    signal after its own crash handling, so the CLI sees Terminated and exits 143."""
    signal.signal(signal.SIGTERM, _raise_terminated)


class WriteGate:
    """Months write through the gate; `close` waits for the writes in progress, then no more."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._writers = 0
        self.stopped = threading.Event()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            if self.stopped.is_set():
                raise RunStopped("the run is stopping, so this month was not written")
            self._writers += 1
        try:
            yield
        finally:
            with self._condition:
                self._writers -= 1
                self._condition.notify_all()

    def close(self, timeout_s: float | None = None) -> bool:
        """Refuse new writes and wait for those in progress; False if they outlast timeout_s."""
        with self._condition:
            self.stopped.set()
            return self._condition.wait_for(lambda: self._writers == 0, timeout_s)
