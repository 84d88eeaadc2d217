"""Stopping a run without losing anything: signals become exceptions, and months write through
a gate that, once closed, lets the writes in progress finish and refuses every later one, so
the lake lock is released only when nothing can write any more."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from flows.errors import RunStopped

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer


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


def start_shielded_temporary_server() -> None:
    """Start Prefect's temporary API server (used when PREFECT_API_URL is unset) in a session
    of its own, before the run needs it.

    Ctrl-C in a terminal signals the whole foreground process group. Started the usual way,
    the temporary server is in that group and dies first, and the interrupted run then spends
    minutes retrying a dead API before it can exit. In its own session it outlives the run's
    cleanup, and is stopped at exit as usual (Prefect registers that with atexit). Prefect
    offers no option for this, so the one Popen call it makes while starting is given
    start_new_session=True.
    """
    import subprocess
    from unittest import mock

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    popen = subprocess.Popen

    def popen_in_own_session(*args: object, **kwargs: object) -> object:
        kwargs.setdefault("start_new_session", True)
        return popen(*args, **kwargs)  # type: ignore[call-overload]  # Popen's own arguments

    server = SubprocessASGIServer()
    with mock.patch.object(subprocess, "Popen", popen_in_own_session):
        server.start()
    _started.append(server)


_started: list[SubprocessASGIServer] = []


def stop_temporary_server() -> None:
    """Stop the temporary server started here, if any (atexit would, later and again: a no-op),
    after Prefect's background workers have sent it the run's last logs and events."""
    if not _started:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)
    for server in _started:
        server.stop()
    _started.clear()
