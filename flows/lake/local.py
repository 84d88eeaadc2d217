"""The lake in a folder on this machine; month files are replaced with an atomic rename."""

from __future__ import annotations

import os
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.lake.layout import (
    DATA_FILE,
    PARTITION_RE,
    TEMP_FILE_RE,
    MonthFooter,
    footer_of,
    parquet_bytes_writer,
    unreadable_reason,
)
from flows.lake.locking import file_lock
from flows.lake.manifest import MANIFEST_DIR
from flows.sources.specs import DatasetSpec


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
            match = PARTITION_RE.match(child.name)
            if match and (child / DATA_FILE).is_file():
                found.add(match.group(1))
        return found

    def month_files(self) -> dict[str, str]:
        """The exact path of every month's file, by month: what staging reads, nothing else."""
        return {month: str(self.partition_dir(month) / DATA_FILE) for month in self.months()}

    def footers(self) -> dict[str, MonthFooter]:
        """Every month's footer as the file's own metadata says it (no column data is read)."""
        found = {}
        for month in sorted(self.months()):
            try:
                found[month] = footer_of(pq.read_metadata(self.partition_dir(month) / DATA_FILE))
            except (pa.ArrowException, OSError) as exc:
                found[month] = MonthFooter.unreadable(unreadable_reason(exc))
        return found

    def strays(self) -> list[str]:
        """Everything in the dataset folder that is no month file, by path: never deleted, only
        named, since someone may want it (a copy, a backup, a download left behind)."""
        base = Path(self.root)
        if not base.is_dir():
            return []
        found = []
        for child in sorted(base.iterdir()):
            if not (PARTITION_RE.match(child.name) and child.is_dir()):
                found.append(str(child))
                continue
            for inner in sorted(child.iterdir()):
                month_file = inner.name == DATA_FILE and inner.is_file()
                if not month_file and not TEMP_FILE_RE.match(inner.name):
                    found.append(str(inner))
        return sorted(found)

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
        return int(pq.ParquetFile(self.partition_dir(month) / DATA_FILE).metadata.num_rows)

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
        # a lenient decode: a text that is not UTF-8 reaches parse_entries, which refuses it
        # (and says so) instead of this listing failing the run
        return {
            path.stem: path.read_bytes().decode("utf-8", errors="replace")
            for path in folder.glob("*.json")
            if path.is_file()
        }

    def lock(self, wait_s: float) -> AbstractContextManager[None]:
        # beside the dataset folder, so no reader's glob over the partitions ever sees it
        return file_lock(f"{self.root}.lock", wait_s)
