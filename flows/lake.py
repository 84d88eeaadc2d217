"""The data lake: one Parquet file per month in a hive layout, replaced whole, never appended.

    <lake>/<dataset>/report_month=2024-05/data.parquet
    <lake>/<dataset>/report_month=unknown/data.parquet   (rows with no report time)

The lake is the pipeline's only state: a month is loaded when its file exists.
"""

from __future__ import annotations

import os
import re
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from flows.datasets import DatasetSpec
from flows.errors import ConfigError
from flows.locking import file_lock
from flows.manifest import MANIFEST_DIR
from flows.settings import Settings

DATA_FILE = "data.parquet"
_PARTITION_RE = re.compile(r"^report_month=(\d{4}-\d{2}|unknown)$")


class Lake(Protocol):
    root: str

    def months(self) -> set[str]: ...

    def write_month(self, month: str, table: pa.Table) -> str: ...

    def row_count(self, month: str) -> int: ...

    def read_month(self, month: str) -> pa.Table: ...

    def lock(self, wait_s: float) -> AbstractContextManager[None]: ...

    def write_manifest(self, month: str, text: str) -> None: ...

    def manifest_texts(self) -> dict[str, str]: ...


def parquet_bytes_writer(table: pa.Table, sink: object) -> None:
    """The lake's one Parquet encoding: snappy (readable by BigQuery and DuckDB), one row group
    per 128k rows, statistics on so engines can prune by timestamp."""
    pq.write_table(table, sink, compression="snappy", row_group_size=128 * 1024)


class LocalLake:
    """A folder on this machine. Month files are replaced with an atomic rename."""

    def __init__(self, root: str, spec: DatasetSpec) -> None:
        self.root = str(Path(root, spec.name))
        self.spec = spec

    def partition_dir(self, month: str) -> Path:
        return Path(self.root, f"{self.spec.partition_column}={month}")

    def months(self) -> set[str]:
        base = Path(self.root)
        if not base.is_dir():
            return set()
        found = set()
        for child in base.iterdir():
            match = _PARTITION_RE.match(child.name)
            if match and (child / DATA_FILE).is_file():
                found.add(match.group(1))
        return found

    def write_month(self, month: str, table: pa.Table) -> str:
        folder = self.partition_dir(month)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / DATA_FILE
        # the temp name does not end in .parquet, so no reader's glob ever sees a half-written file
        temp = folder / f".{DATA_FILE}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temp, "wb") as sink:
                parquet_bytes_writer(table, sink)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        for leftover in folder.glob(f".{DATA_FILE}.*.tmp"):
            leftover.unlink(missing_ok=True)
        return str(final)

    def row_count(self, month: str) -> int:
        return pq.ParquetFile(self.partition_dir(month) / DATA_FILE).metadata.num_rows

    def read_month(self, month: str) -> pa.Table:
        return pq.read_table(self.partition_dir(month) / DATA_FILE)

    def manifest_dir(self) -> Path:
        return Path(self.root).parent / MANIFEST_DIR / self.spec.name

    def write_manifest(self, month: str, text: str) -> None:
        folder = self.manifest_dir()
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{month}.{uuid.uuid4().hex}.tmp"
        temp.write_text(text)
        os.replace(temp, folder / f"{month}.json")

    def manifest_texts(self) -> dict[str, str]:
        folder = self.manifest_dir()
        if not folder.is_dir():
            return {}
        return {path.stem: path.read_text() for path in folder.glob("*.json")}

    def lock(self, wait_s: float) -> AbstractContextManager[None]:
        # beside the dataset folder, so no reader's glob over the partitions ever sees it
        return file_lock(f"{self.root}.lock", wait_s)


def open_lake(settings: Settings, spec: DatasetSpec) -> Lake:
    """The lake named by CRIME_LAKE_URL: a local folder, or gs://bucket/prefix on GCS."""
    url = settings.lake_root()
    if url.startswith("gs://"):
        from flows.gcs_lake import open_gcs_lake  # google clients load only when used

        return open_gcs_lake(url, spec, settings)
    if "://" in url:
        raise ConfigError(
            f"CRIME_LAKE_URL={settings.lake_url!r} has an unsupported scheme: use a local folder "
            "or gs://BUCKET/PREFIX."
        )
    return LocalLake(url, spec)
