"""A Socrata (SODA 2) look-alike on loopback: metadata, `/resource/` queries, faults, slow links."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from .data import FIELD_TYPES, FIELDS, GENERATED_AT, SYSTEM_FIELDS, Row, invalid_utf8
from .faults import Faults, NetworkModel
from .query import Result, Table, run_query
from .soql import SoqlError

VIEW_PATH = re.compile(r"^/api/views/([^/]+)\.json$")
RESOURCE_PATH = re.compile(r"^/resource/([^/]+)\.(json|csv)$")
# the pipeline's month query, indexed ahead of the first request
WARM_ORDER = ("report_date_time", "offense_id")
GENERATED_EPOCH = int(datetime.fromisoformat(GENERATED_AT).timestamp())
HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    b"<body><h1>Service Temporarily Unavailable</h1><p>Please try again later.</p></body></html>\n"
)


class LoggedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    status: int
    app_token: str | None = None


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class PageHook:
    """Runs `action(server)` once, right after the `number`th data page whose `$where` contains
    `where_contains` is answered: the page was computed from the rows before the change, and
    the client sees the change from its next request on. A data page is a `/resource/` query
    with no aggregate (no count/max/min, no $group) that the server answered with data (one
    it cut short or dropped for a fault counts too; one it refused does not)."""

    number: int
    action: Callable[[SocrataServer], object]
    where_contains: str = ""
    seen: int = 0
    fired: bool = False


AGGREGATE_CALL = re.compile(r"\b(count|max|min)\s*\(", re.IGNORECASE)


def is_data_page(query: dict[str, str]) -> bool:
    return "$group" not in query and not AGGREGATE_CALL.search(query.get("$select", ""))


def now_timestamp() -> str:
    """UTC now in Socrata's fixed-timestamp form, e.g. `2024-05-02T10:11:12.345Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    body = {"code": code, "error": True, "message": message, **extra}
    return Response(status, json.dumps(body).encode(), "application/json; charset=UTF-8")


class SocrataServer:
    """Serves one dataset the way data.seattle.gov does, for tests, the demo and the benchmark."""

    def __init__(
        self,
        rows: list[Row],
        dataset_id: str = "tazs-3rd5",
        fields: tuple[str, ...] = FIELDS,
        faults: Faults | None = None,
        network: NetworkModel | None = None,
        port: int = 0,
    ) -> None:
        self.dataset_id = dataset_id
        self.faults = faults if faults is not None else Faults()
        self.network = network
        self.port = port
        self.rows_updated_at = GENERATED_EPOCH
        self.connections_opened = 0
        # reentrant, so the read-modify-write mutators can hold it across set_rows
        self._lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._serial = 0
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._warm_thread: threading.Thread | None = None
        self._page_hooks: list[PageHook] = []
        types = {field: FIELD_TYPES.get(field, "text") for field in fields}
        normalized = [_published(_normalize(row, fields)) for row in rows]
        self._table = Table(dataset_id, normalized, fields, types)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> str:
        """Bind 127.0.0.1, serve in a daemon thread and return the base url (once: idempotent)."""
        if self._httpd is not None:
            return self.url
        self._httpd = _HttpServer(("127.0.0.1", self.port), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._warm(self._table)
        return self.url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> SocrataServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def fields(self) -> tuple[str, ...]:
        return self._table.fields

    @property
    def rows(self) -> list[Row]:
        """A copy of the current rows, system fields included."""
        return [dict(row) for row in self._table.rows]

    def set_rows(self, rows: list[Row]) -> None:
        """Replace every row; rows new or changed since the last state get `:updated_at` = now."""
        with self._lock:
            table = self._table
            previous = {row[":id"]: row for row in table.rows}
            stamp = now_timestamp()
            fresh = [_restamp(_normalize(row, table.fields), previous, stamp) for row in rows]
            self._install(fresh, table.fields, table.types)

    def upsert_rows(self, rows: Iterable[Row]) -> None:
        """Replace rows with the same `:id`, append the others (new ids when they have none)."""
        changes = {row.get(":id") or f"new-{index}": row for index, row in enumerate(rows)}
        with self._lock:
            merged = [changes.pop(str(row[":id"]), row) for row in self.rows]
            self.set_rows(merged + list(changes.values()))

    def delete_rows(self, row_ids: Iterable[str]) -> None:
        """Drop rows by `:id`, like a sealed record disappearing from the source."""
        gone = set(row_ids)
        with self._lock:
            self.set_rows([row for row in self.rows if row[":id"] not in gone])

    def rename_field(self, old: str, new: str) -> None:
        """Rename a column in place (same dataset id), as SPD did with the NIBRS names."""
        with self._lock:
            table = self._table
            if old not in table.fields:
                raise KeyError(old)
            fields = tuple(new if field == old else field for field in table.fields)
            types = {(new if key == old else key): value for key, value in table.types.items()}
            rows = [{(new if k == old else k): v for k, v in row.items()} for row in table.rows]
            self._install(rows, fields, types, touch=False)

    def after_page(
        self, number: int, action: Callable[[SocrataServer], object], where_contains: str = ""
    ) -> PageHook:
        """Revise the rows between two pages: `action(self)` runs once, after the `number`th data
        page (see PageHook) whose `$where` contains `where_contains` (e.g. a month's first
        timestamp), before that page's body is sent. Returns the hook; `hook.fired` tells."""
        if number < 1:
            raise ValueError("number counts pages from 1")
        hook = PageHook(number, action, where_contains)
        with self._lock:
            self._page_hooks.append(hook)
        return hook

    def _page_answered(self, query: dict[str, str]) -> None:
        if not is_data_page(query):
            return
        where = query.get("$where", "")
        due: list[PageHook] = []
        with self._lock:
            for hook in self._page_hooks:
                if hook.fired or hook.where_contains not in where:
                    continue
                hook.seen += 1
                if hook.seen == hook.number:
                    hook.fired = True
                    due.append(hook)
        for hook in due:
            hook.action(self)

    @property
    def requests_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _install(
        self, rows: list[Row], fields: tuple[str, ...], types: dict[str, str], touch: bool = True
    ) -> None:
        data_types = {field: types[field] for field in fields}
        self._table = Table(self.dataset_id, rows, fields, data_types)
        if touch:
            self.rows_updated_at = int(time.time())
        if self._httpd is not None:
            self._warm(self._table)

    def _warm(self, table: Table) -> None:
        self._warm_thread = threading.Thread(target=table.warm, args=(WARM_ORDER,), daemon=True)
        self._warm_thread.start()

    def wait_warm(self, timeout: float | None = None) -> None:
        """Block until the background indexing and rendering of the current rows is done."""
        if self._warm_thread is not None:
            self._warm_thread.join(timeout)

    def handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        response, fault = self._respond(split.path, query, unquote_plus(handler.path))
        with self._lock:
            self._log.append(
                LoggedRequest(
                    handler.command,
                    split.path,
                    query,
                    response.status,
                    handler.headers.get("X-App-Token"),
                )
            )
        handler.send(response, fault, self.network)

    def _respond(
        self, path: str, query: dict[str, str], target: str
    ) -> tuple[Response, str | None]:
        table = self._table
        view = VIEW_PATH.match(path)
        if view:
            if view.group(1) != self.dataset_id:
                return _not_found(view.group(1)), None
            return self._metadata(table), None
        resource = RESOURCE_PATH.match(path)
        if resource is None:
            return error_response(404, "not_found", f"Not found: {path}"), None
        fault = self.faults.pick(target)
        if fault in ("fail", "throttle", "error", "accepted", "html"):
            return self._fault_response(fault), None
        if resource.group(1) != self.dataset_id:
            return _not_found(resource.group(1)), None
        with self._lock:
            self._serial += 1
            serial = self._serial
        try:
            result = run_query(table, query, resource.group(2), serial)
        except SoqlError as error:
            body = json.dumps(error.body()).encode()
            return Response(400, body, "application/json; charset=UTF-8"), None
        except Exception as error:
            # a bug in the fake must still answer, not hang up, or tests would blame the client
            return error_response(500, "internal_error", f"{type(error).__name__}: {error}"), None
        self._page_answered(query)
        return _data_response(result), fault

    def _fault_response(self, fault: str) -> Response:
        if fault == "fail":
            return error_response(503, "service_unavailable", "Service temporarily unavailable")
        if fault == "throttle":
            response = error_response(429, "throttled", "Too many requests, slow down")
            return response._replace(headers=(("Retry-After", self.faults.retry_after_header()),))
        if fault == "error":
            status = self.faults.error_status
            return error_response(status, "internal_error", "Internal error, please retry")
        if fault == "accepted":
            body = json.dumps({"message": "processing"}).encode()
            return Response(202, body, "application/json; charset=UTF-8")
        return Response(200, HTML_ERROR, "text/html; charset=UTF-8")

    def _metadata(self, table: Table) -> Response:
        columns = [
            {
                "id": 500_000_000 + position,
                "name": field.replace("_", " ").title(),
                "dataTypeName": table.types[field],
                "fieldName": field,
                "position": position + 1,
                "renderTypeName": table.types[field],
            }
            for position, field in enumerate(table.fields)
        ]
        body = {
            "id": self.dataset_id,
            "name": "SPD Crime Data: 2008-Present",
            "assetType": "dataset",
            "viewType": "tabular",
            "createdAt": GENERATED_EPOCH,
            "rowsUpdatedAt": self.rows_updated_at,
            "columns": columns,
        }
        return Response(200, json.dumps(body).encode(), "application/json; charset=UTF-8")


def _not_found(dataset_id: str) -> Response:
    return error_response(404, "not_found", f"Cannot find view with id {dataset_id}")


def _data_response(result: Result) -> Response:
    headers = (
        ("X-SODA2-Fields", json.dumps(list(result.fields))),
        ("X-SODA2-Types", json.dumps(list(result.types))),
        ("X-SODA2-Data-Out-Of-Date", "false"),
    )
    return Response(200, result.body, result.content_type, headers)


def _normalize(row: Row, fields: tuple[str, ...]) -> Row:
    """Every field present (missing ones null), values as text, system fields kept."""
    normal: Row = {field: _as_text(row.get(field)) for field in fields}
    for name in SYSTEM_FIELDS:
        normal[name] = _as_text(row.get(name))
    return normal


def _as_text(value: object) -> str | None:
    if isinstance(value, bytes):
        return invalid_utf8(value)  # sent as these very bytes, valid UTF-8 or not
    return None if value is None else str(value)


def _published(row: Row) -> Row:
    """Rows handed to the constructor are the published state: fill any missing system field."""
    row[":id"] = row[":id"] or _new_row_id()
    row[":created_at"] = row[":created_at"] or GENERATED_AT
    row[":updated_at"] = row[":updated_at"] or row[":created_at"]
    return row


def _restamp(row: Row, previous: dict[str | None, Row], stamp: str) -> Row:
    old = previous.get(row[":id"]) if row[":id"] else None
    if old is None:
        row[":id"] = row[":id"] or _new_row_id()
        row[":created_at"] = stamp
        row[":updated_at"] = stamp
        return row
    changed = any(row[key] != old.get(key) for key in row if not key.startswith(":"))
    row[":created_at"] = old[":created_at"]
    row[":updated_at"] = stamp if changed else old[":updated_at"]
    return row


def _new_row_id() -> str:
    token = uuid.uuid4().hex
    return f"row-{token[:4]}-{token[4:8]}"


def _truncation_point(body: bytes) -> int:
    """A cut in the middle of a row that does not split a UTF-8 character."""
    cut = len(body) // 2
    while cut > 1 and (body[cut - 1] == ord("\n") or body[cut] & 0xC0 == 0x80):
        cut -= 1
    return cut


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], owner: SocrataServer
    ) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
            self.owner.connections_opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up idle keep-alive connections so their threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; Nagle plus delayed ACK would add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # http.server dispatches on this exact name
    def do_GET(self) -> None:
        self.server.owner.handle(self)

    def log_message(self, *args: Any) -> None:
        # quiet: the request log on SocrataServer is the record tests read
        return

    def send(self, response: Response, fault: str | None, network: NetworkModel | None) -> None:
        if network is not None:
            time.sleep(network.latency_s)
        body = response.body
        if fault == "truncate":
            body = body[: _truncation_point(body)]
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if fault == "drop":
            self.send_header("Connection", "close")
        self.end_headers()
        if fault == "drop":
            self._write(body[: _truncation_point(body)], network)
            self._hang_up()
        else:
            self._write(body, network)

    def _write(self, body: bytes, network: NetworkModel | None) -> None:
        if network is None:
            self.wfile.write(body)
            return
        chunk = network.chunk_size()
        started = time.monotonic()
        for offset in range(0, len(body), chunk):
            self.wfile.write(body[offset : offset + chunk])
            due = started + (offset + chunk) / network.bandwidth_bytes_per_s
            time.sleep(max(0.0, due - time.monotonic()))

    def _hang_up(self) -> None:
        # the announced Content-Length is never reached: the client sees an incomplete read
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
