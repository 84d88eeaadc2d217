"""The data lake: where months are kept. `open_lake` is the one switch between a local folder
and a GCS bucket; every backend satisfies the `Lake` protocol."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from flows.lake.layout import MonthFooter, lake_kind
from flows.lake.local import LocalLake
from flows.settings import Settings
from flows.sources.specs import DatasetSpec


class Lake(Protocol):
    root: str

    def months(self) -> set[str]: ...

    def month_files(self) -> dict[str, str]:
        """Month -> the exact path or URL of its one data file; staging reads these only."""
        ...

    def footers(self) -> dict[str, MonthFooter]:
        """Month -> its file's footer (rows, schema) or why it is unreadable; never raises for
        a damaged file, and reads no column data."""
        ...

    def strays(self) -> list[str]:
        """Paths or URLs under the dataset folder that are no month file (left in place)."""
        ...

    def write_month(self, month: str, table: pa.Table) -> str: ...

    def row_count(self, month: str) -> int: ...

    def read_month(self, month: str) -> pa.Table: ...

    def lock(self, wait_s: float) -> AbstractContextManager[None]: ...

    def write_manifest(self, month: str, text: str) -> None: ...

    def manifest_texts(self) -> dict[str, str]: ...


def open_lake(settings: Settings, spec: DatasetSpec) -> Lake:
    """The lake named by CRIME_LAKE_URL: a local folder, or gs://bucket/prefix on GCS."""
    if lake_kind(settings.lake_url) == "gcs":
        from flows.lake.gcs import open_gcs_lake  # google clients load only when used

        return open_gcs_lake(settings.lake_url, spec, settings)
    return LocalLake(str(Path(settings.lake_url).expanduser().resolve()), spec)
