"""One HTTP session per portal: timeouts, bounded retries with backoff that honour Retry-After."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from flows.errors import RunStopped, SourceError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({202, 408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0
# a refused or dropped connection, a timeout, a body cut short or garbled in transit
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str


class HttpClient:
    """Talks to one portal. Thread-safe: months are fetched concurrently over one session."""

    def __init__(
        self,
        portal_url: str,
        headers: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        attempts: int = 6,
        backoff_s: float = 1.0,
        pool_size: int = 8,
        stop: threading.Event | None = None,
    ) -> None:
        self.portal_url = portal_url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept-Encoding"] = "gzip"
        self.session.headers["User-Agent"] = "seattle-crime-loader/0.1"
        # credentials such as an app token travel in headers, never in URLs that get logged
        self.session.headers.update(headers or {})
        # set when the run stops: no new attempt starts and a backoff wait ends at once
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()
        self.requests_made = 0

    def close(self) -> None:
        self.session.close()

    def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        expect: str = "",
        check: Callable[[bytes], object] | None = None,
    ) -> Response:
        """GET with retries on throttling, server errors and broken connections.

        `expect` is a content-type fragment ("csv", "json"): a 200 with another type (an HTML
        error page from a proxy) is treated as a transient failure, never as data. `check` may
        raise ValueError on a body that arrived cut short; that is retried too.
        """
        url = f"{self.portal_url}{path}"
        last_problem = ""
        for attempt in range(1, self.attempts + 1):
            if self.stop.is_set():
                raise RunStopped("the run is stopping, so no more requests are sent")
            wait_s: float | None = None
            try:
                # every attempt counts, answered or not: a dropped one reached the portal too
                self._count()
                resp = self.session.get(url, params=params, timeout=self.timeout_s)
                body = resp.content
            except TRANSIENT_ERRORS as exc:
                last_problem = f"connection failed ({type(exc).__name__})"
            else:
                content_type = resp.headers.get("Content-Type", "")
                if resp.status_code == 200 and expect in content_type:
                    try:
                        if check is not None:
                            check(body)
                        return Response(200, body, content_type)
                    except ValueError:
                        last_problem = "answered 200 with a malformed body"
                elif resp.status_code == 200:
                    last_problem = f"answered 200 with {content_type or 'no content type'}"
                elif resp.status_code in RETRY_STATUSES:
                    last_problem = f"answered HTTP {resp.status_code}"
                    wait_s = retry_after_seconds(resp.headers.get("Retry-After"))
                else:
                    raise http_error(resp.status_code, body, url)
            if attempt == self.attempts:
                break
            if wait_s is None:
                wait_s = self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.warning(
                "%s %s; retry %d/%d in %.1fs",
                path,
                last_problem,
                attempt,
                self.attempts - 1,
                wait_s,
            )
            self.stop.wait(wait_s)
        raise SourceError(
            f"The source at {self.portal_url} kept failing ({last_problem}) after "
            f"{self.attempts} attempts: check that it is reachable, or try again later."
        )

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        return json.loads(self.get(path, params, expect="json", check=json.loads).body)

    def _count(self) -> None:
        with self._lock:
            self.requests_made += 1


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def http_error(status: int, body: bytes, url: str) -> SourceError:
    """The one-sentence error for an answer that retrying cannot fix."""
    message = server_message(body)
    base = url.split("?", 1)[0]
    if status == 400:
        return SourceError(
            f"The source rejected the query to {base} (HTTP 400: {message}): "
            "the dataset's columns may have changed; check the dataset spec."
        )
    if status == 404:
        return SourceError(
            f"The source has no dataset at {base} (HTTP 404): check CRIME_DATASET_ID and "
            "CRIME_SOURCE_URL."
        )
    if status in (401, 403):
        return SourceError(
            f"The source refused access to {base} (HTTP {status}: {message}): "
            "check SOCRATA_APP_TOKEN."
        )
    return SourceError(f"The source answered HTTP {status} for {base}: {message}.")


def server_message(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no message"
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("code") or payload)[:300]
    return str(payload)[:300]
