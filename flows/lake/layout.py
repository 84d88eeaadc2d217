"""The data lake: one Parquet file per month in a hive layout, replaced whole, never appended.

    <lake>/<dataset>/report_month=2024-05/data.parquet
    <lake>/<dataset>/report_month=unknown/data.parquet   (rows with no report time)

The lake is the pipeline's only state: a month is loaded when its file exists.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq

DATA_FILE = "data.parquet"
PARTITION_RE = re.compile(r"^report_month=(\d{4}-\d{2}|unknown)$")


def parquet_bytes_writer(table: pa.Table, sink: object) -> None:
    """The lake's one Parquet encoding: snappy (readable by BigQuery and DuckDB), one row group
    per 128k rows, statistics on so engines can prune by timestamp."""
    pq.write_table(table, sink, compression="snappy", row_group_size=128 * 1024)
