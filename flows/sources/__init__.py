"""Where the data comes from. `open_source` is the one switch between source kinds (Socrata
today); every kind is a `MonthReader` over one dataset, built from the HTTP client in http.py."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from flows.sources.http import HttpClient

if TYPE_CHECKING:
    from flows.settings import Settings
    from flows.sources.socrata import MonthData, SourceMonth
    from flows.sources.specs import DatasetSpec


class MonthReader(Protocol):
    """A dataset read a month at a time: its contract, every month's count, whole months."""

    spec: DatasetSpec

    @property
    def requests_made(self) -> int: ...

    def check_contract(self) -> list[str]:
        """Raise ContractError when a field the spec loads is gone; return new unknown fields."""
        ...

    def months(self) -> dict[str, SourceMonth]:
        """Every month's row count and latest update, in one request where the API allows."""
        ...

    def fetch_month(self, month: str, known_count: int | None = None) -> MonthData:
        """A whole month, proven complete, or an IncompleteMonthError; never part of one."""
        ...

    def close(self) -> None: ...


def open_source(
    settings: Settings,
    spec: DatasetSpec,
    app_token: str | None,
    stop: threading.Event | None = None,
) -> MonthReader:
    """The reader for `spec` on its portal, with the run's HTTP settings; `stop` set ends its
    requests early when the run stops."""
    from flows.sources.socrata import SocrataReader

    headers = {"X-App-Token": app_token} if app_token else {}
    client = HttpClient(
        spec.portal_url,
        headers=headers,
        timeout_s=settings.http_timeout_s,
        attempts=settings.http_attempts,
        backoff_s=settings.http_backoff_s,
        pool_size=max(settings.concurrency, 4),
        stop=stop,
    )
    return SocrataReader(client, spec, settings.page_size, settings.month_attempts)
