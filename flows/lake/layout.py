"""The data lake: one Parquet file per month in a hive layout, replaced whole, never appended.

    <lake>/<dataset>/report_month=2024-05/data.parquet
    <lake>/<dataset>/report_month=unknown/data.parquet   (rows with no report time)

The lake is the pipeline's only state: a month is loaded when its file exists.
"""

from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import ConfigError

LakeKind = Literal["local", "gcs"]
GCS_SCHEME = "gs://"
DATA_FILE = "data.parquet"
PARTITION_RE = re.compile(r"^report_month=([0-9]{4}-[0-9]{2}|unknown)$")


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
