"""The data lake: one Parquet file per month in a hive layout, replaced whole, never appended.

    <lake>/<dataset>/report_month=2024-05/data.parquet
    <lake>/<dataset>/report_month=unknown/data.parquet   (rows with no report time)

The lake is the pipeline's only state: a month is loaded when its file exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import ConfigError

LakeKind = Literal["local", "gcs"]
GCS_SCHEME = "gs://"
DATA_FILE = "data.parquet"
PARTITION_RE = re.compile(r"^report_month=([0-9]{4}-[0-9]{2}|unknown)$")
# what a month's own writer leaves beside data.parquet for an instant (LocalLake.write_month)
TEMP_FILE_RE = re.compile(rf"^\.{re.escape(DATA_FILE)}\.[0-9a-f]+\.tmp$")


@dataclass(frozen=True)
class MonthFooter:
    """What a month file's Parquet footer says, or why it could not be read.

    Read from the footer alone (a few kilobytes at the end of the file), never the column data:
    rows and schema are None exactly when problem says why the file is unreadable.
    """

    rows: int | None
    schema: tuple[str, ...] | None
    problem: str | None = None

    @classmethod
    def unreadable(cls, problem: str) -> MonthFooter:
        return cls(None, None, problem)


def schema_strings(schema: pa.Schema) -> tuple[str, ...]:
    """A schema as the manifest records it: name:type per column, in file order."""
    return tuple(f"{field.name}:{field.type}" for field in schema)


def footer_of(metadata: pq.FileMetaData) -> MonthFooter:
    """The footer's row count and arrow schema; a footer arrow cannot map is a problem too."""
    try:
        schema = metadata.schema.to_arrow_schema()
    except (pa.ArrowException, ValueError) as exc:
        return MonthFooter.unreadable(f"unreadable schema: {_first_line(exc)}")
    return MonthFooter(int(metadata.num_rows), schema_strings(schema))


def unreadable_reason(exc: BaseException) -> str:
    """A short, single-line reason for a footer that could not be read."""
    return f"not a readable Parquet file: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def parquet_bytes_writer(table: pa.Table, sink: object) -> None:
    """The lake's one Parquet encoding: snappy (readable by BigQuery and DuckDB), one row group
    per 128k rows, statistics on so engines can prune by timestamp."""
    pq.write_table(table, sink, compression="snappy", row_group_size=128 * 1024)


def lake_kind(url: str) -> LakeKind:
    """Which backend a CRIME_LAKE_URL names: the one place that reads the URL's scheme."""
    if url.startswith(GCS_SCHEME):
        return "gcs"
    if "://" in url:
        raise ConfigError(
            f"CRIME_LAKE_URL={url!r} has an unsupported scheme: use a local folder "
            "or gs://BUCKET/PREFIX."
        )
    return "local"


# gcs naming rules: lowercase letters, digits, '-', '_' and '.', starting and ending alphanumeric
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_EXAMPLE = "use gs://BUCKET/PREFIX, for example gs://my-crime-lake/lake"


@dataclass(frozen=True)
class GcsLocation:
    bucket: str
    prefix: str  # no leading or trailing slash; empty for the bucket's top level


def parse_gcs_url(url: str) -> GcsLocation:
    """Split gs://bucket/prefix, or raise ConfigError with one sentence saying what is wrong."""
    text = url.strip()
    if not text.startswith(GCS_SCHEME):
        raise ConfigError(f"CRIME_LAKE_URL={url!r} is not a gs:// URL: {_EXAMPLE}.")
    rest = text[len(GCS_SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"CRIME_LAKE_URL={url!r} names no bucket: {_EXAMPLE}.")
    if "://" in rest:
        raise ConfigError(
            f"CRIME_LAKE_URL={url!r} repeats a scheme inside the location: {_EXAMPLE}."
        )
    if not _BUCKET_RE.match(bucket):
        raise ConfigError(
            f"CRIME_LAKE_URL={url!r} has an invalid bucket name {bucket!r}: use the bucket's "
            "name alone (3-222 lowercase letters, digits, '-', '_' or '.'), as in "
            "gs://my-crime-lake/lake."
        )
    prefix = prefix.strip("/")
    if "//" in prefix:
        raise ConfigError(
            f"CRIME_LAKE_URL={url!r} has an empty folder name (a doubled '/') in its prefix: "
            f"{_EXAMPLE}."
        )
    return GcsLocation(bucket, prefix)
