"""A real GCS emulator (gcp-storage-emulator) in a subprocess, and ways to watch the traffic to it.

    with running_emulator(tmp_dir) as emulator:       # starts it, waits until it answers
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        client = emulator.client()                     # anonymous, project "test"
        ...                                            # stopped by pid at the end

The emulator writes one line per request (`"POST /upload/...?ifGenerationMatch=0 HTTP/1.1" 200 -`)
to its log, which is how the tests see what reached it. It does not enforce preconditions, so
`PreconditionFailingGcs` stands in for GCS when a test needs a real 412 answer.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.cloud.storage as storage
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from tests.processes import stop_process

EMULATOR_SCRIPT = "gcp-storage-emulator"
_REQUEST_LINE_RE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


class EmulatorError(RuntimeError):
    """The emulator could not be started; the message says why and shows its log."""


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # with the query string, as the emulator received it
    status: int


@dataclass
class GcsEmulator:
    url: str  # the value for STORAGE_EMULATOR_HOST
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, http: requests.Session | None = None) -> storage.Client:
        """A client of this emulator, whatever STORAGE_EMULATOR_HOST says."""
        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.url),
            _http=http,
        )

    def requests(self) -> list[LoggedRequest]:
        """Every request the emulator has answered, oldest first."""
        text = self.log_path.read_text(errors="replace")
        return [
            LoggedRequest(m.group(1), m.group(2), int(m.group(3)))
            for m in _REQUEST_LINE_RE.finditer(text)
        ]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def emulator_script() -> Path:
    # beside the running interpreter, so any virtual environment with the package works
    return Path(sys.executable).parent / EMULATOR_SCRIPT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(log_dir: Path, timeout_s: float = 20.0) -> GcsEmulator:
    """Start an in-memory emulator on a free 127.0.0.1 port and wait until it answers."""
    script = emulator_script()
    if not script.exists():
        raise EmulatorError(
            f"{script} does not exist: install gcp-storage-emulator (requirements.txt) "
            "into this virtual environment."
        )
    port = free_port()
    log_path = log_dir / f"gcs-emulator-{port}.log"
    command = [str(script), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    emulator = GcsEmulator(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_answering(emulator, timeout_s)
    except BaseException:
        stop_emulator(emulator)
        raise
    return emulator


def _wait_until_answering(emulator: GcsEmulator, timeout_s: float) -> None:
    # no proxy: the emulator is on this machine and nothing else may be contacted
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            raise EmulatorError(
                f"the GCS emulator exited with code {emulator.process.returncode} at start; "
                f"its log:\n{emulator.log_tail()}"
            )
        try:
            with opener.open(f"{emulator.url}/", timeout=1) as answer:
                if answer.read() == b"OK":
                    return
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise EmulatorError(
        f"the GCS emulator did not answer at {emulator.url} within {timeout_s:.0f}s "
        f"({last_error}); its log:\n{emulator.log_tail()}"
    )


def stop_emulator(emulator: GcsEmulator, timeout_s: float = 5.0) -> None:
    """Stop the emulator by its pid."""
    stop_process(emulator.process, timeout_s)


@contextmanager
def running_emulator(log_dir: Path, timeout_s: float = 20.0) -> Iterator[GcsEmulator]:
    emulator = start_emulator(log_dir, timeout_s)
    try:
        yield emulator
    finally:
        stop_emulator(emulator)


@dataclass(frozen=True)
class Exchange:
    method: str
    url: str
    status: int
    range: str | None  # the request's Range header
    content_length: int | None  # bytes in the response body


class RecordingSession(requests.Session):
    """The HTTP session a storage client sends everything through, remembering each exchange.

    It only watches: every request still goes to the server.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # no proxies from the environment: traffic stays on 127.0.0.1
        self.exchanges: list[Exchange] = []
        self.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        length = response.headers.get("Content-Length")
        self.exchanges.append(
            Exchange(
                method=response.request.method or "",
                url=response.request.url or "",
                status=response.status_code,
                range=response.request.headers.get("Range"),
                content_length=int(length) if length is not None else None,
            )
        )


@dataclass
class PreconditionFailingGcs:
    """A stand-in for GCS that refuses every upload with 412, as GCS does when an
    if_generation_match precondition does not hold (the emulator never does).

    Object metadata reads answer 404 until the first upload, then `object_after_upload`:
    what a reader finds once the competing write (or an earlier attempt of this one) landed.
    """

    object_after_upload: dict[str, str] | None = None
    requests: list[str] = field(default_factory=list)
    _current: dict[str, str] | None = None
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def client(self) -> storage.Client:
        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.url),
        )

    @contextmanager
    def running(self) -> Iterator[PreconditionFailingGcs]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # a short poll interval so shutdown() returns at once rather than after half a second
        server = self._server
        thread = threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(f"GET {self.path}")
                if "/o/" in self.path and fake._current is None:
                    self._json(404, {"error": {"code": 404, "message": "No such object."}})
                elif "/o/" in self.path:
                    self._json(200, fake._current or {})
                else:
                    self._json(200, {"name": self.path.split("/b/")[-1].split("?")[0]})

            def do_POST(self) -> None:
                fake.requests.append(f"POST {self.path}")
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake._current = fake.object_after_upload
                message = "At least one of the pre-conditions you specified did not hold."
                self._json(412, {"error": {"code": 412, "message": message}})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the requests list is the log

        return Handler
