"""The DuckDB warehouse: a staging view over the local lake's month files, rebuilt before each
dbt run."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from flows.errors import ConfigError, PipelineError, WarehouseBusyError
from flows.lake.layout import DATA_FILE, PARTITION_RE
from flows.lake.manifest import ManifestEntry, manifest_table
from flows.sources.specs import DatasetSpec
from flows.warehouse.dbt import Logger, run_dbt_build

if TYPE_CHECKING:
    from flows.lake import Lake
    from flows.settings import Settings

DUCKDB_TYPES = {
    pa.string(): "varchar",
    pa.float64(): "double",
    pa.timestamp("us"): "timestamp",
    pa.timestamp("us", tz="UTC"): "timestamptz",
}


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# characters duckdb expands as a glob even in one path of a list: a path holding one could
# read files that are not the lake's (a[1] matches a1), so such a lake cannot be staged
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")


def duckdb_staging_sql(
    spec: DatasetSpec,
    lake_dataset_root: str,
    schema: str,
    files: Sequence[str],
) -> str:
    """DDL for the staging view: exactly the lake's month files through read_parquet, with
    hive partitioning taking report_month from each file's folder.

    files are the month files the lake holds (Lake.month_files()), each
    <lake_dataset_root>/report_month=<month>/data.parquet; nothing else in the folder is read,
    so a stray copy or backup beside them never shows up in staging.
    An empty lake (no files) gets a typed view with no rows, so dbt can still build (and find
    nothing).
    """
    relation = f"{quote_identifier(schema)}.{quote_identifier(spec.name)}"
    partition = spec.partition_column
    if files:
        paths = ", ".join(_quote_literal(_month_path(spec, lake_dataset_root, f)) for f in files)
        body = (
            f"select * from read_parquet([{paths}], hive_partitioning = true, "
            f"hive_types = {{'{partition}': varchar}}, union_by_name = true)"
        )
    else:
        columns = [f"cast(null as {DUCKDB_TYPES[f.type]}) as {f.name}" for f in spec.arrow_schema()]
        columns.append(f"cast(null as varchar) as {partition}")
        body = "select " + ", ".join(columns) + " where false"
    return f"create or replace view {relation} as {body}"


def quote_identifier(name: str) -> str:
    """A schema or table name as a DuckDB quoted identifier (settings already allow only
    letters, digits and underscores; quoting is the second guard)."""
    return '"' + name.replace('"', '""') + '"'


def _month_path(spec: DatasetSpec, lake_dataset_root: str, file: str) -> str:
    """A month file's path, checked to be one: under the root, a hive folder, data.parquet."""
    path = Path(file)
    month = PARTITION_RE.match(path.parent.name)
    if (
        path.name != DATA_FILE
        or month is None
        or not path.parent.name.startswith(f"{spec.partition_column}=")
        or path.parent.parent != Path(lake_dataset_root)
    ):
        raise ValueError(f"{file!r} is not a month file of the lake at {lake_dataset_root}")
    if _GLOB_CHARS.search(file):
        raise ConfigError(
            f"The lake path {lake_dataset_root!r} holds a character DuckDB reads as a wildcard "
            "(* ? [ ] { }), so staging could read files that are not the lake's: set "
            "CRIME_LAKE_URL to a folder without them."
        )
    return file


def rebuild_duckdb_staging(
    duckdb_path: str,
    spec: DatasetSpec,
    lake_dataset_root: str,
    schema: str,
    files: Sequence[str],
    manifest: Sequence[ManifestEntry],
) -> int:
    """Create or replace the staging view and the manifest table; return the rows staged."""
    import duckdb

    Path(duckdb_path).parent.mkdir(parents=True, exist_ok=True)
    schema_sql = quote_identifier(schema)
    staged = f"{schema_sql}.{quote_identifier(spec.name)}"
    manifest_relation = f"{schema_sql}.{quote_identifier(spec.name + '_manifest')}"
    try:
        with duckdb.connect(duckdb_path) as con:
            con.execute(f"create schema if not exists {schema_sql}")
            con.execute(duckdb_staging_sql(spec, lake_dataset_root, schema, files))
            con.register("manifest_rows", manifest_table(manifest))
            con.execute(
                f"create or replace table {manifest_relation} as select * from manifest_rows"
            )
            con.unregister("manifest_rows")
            row = con.execute(f"select count(*) from {staged}").fetchone()
    except (duckdb.IOException, duckdb.InvalidInputException) as exc:
        if "Could not set lock" in str(exc):
            raise
        # a month file damaged after this run checked it, or one whose new fetch failed
        raise PipelineError(
            f"DuckDB could not read the lake's month files under {lake_dataset_root} "
            f"({str(exc).splitlines()[0]}): run again, which fetches a damaged month anew."
        ) from None
    return int(row[0]) if row else 0


def duckdb_data_quality(duckdb_path: str, months: Sequence[str]) -> list[dict[str, object]]:
    """The dbt model rpt_data_quality for the given report months (what staging cleaned)."""
    import duckdb

    if not months:
        return []
    with duckdb.connect(duckdb_path) as con:
        cursor = con.execute(
            "select * from crime_marts.rpt_data_quality where report_month in "
            f"({', '.join('?' for _ in months)}) order by report_month",
            list(months),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class DuckDbWarehouse:
    """CRIME_WAREHOUSE=duckdb: one DuckDB file, dbt through dbt-duckdb, written, audited and
    published: staging and dbt work on a copy of the file, which replaces the file users read
    (an atomic rename) only after every model and test passed. A failed build leaves the file
    exactly as the last good build left it."""

    name = "duckdb"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = Path(settings.duckdb_file())
        # the copy keeps the file's name: dbt-duckdb names the catalog after it, and views
        # written in the copy must still resolve once it is renamed over the original
        self.build_path = self.path.parent / f".{self.path.name}.build" / self.path.name
        self._building = False

    def _begin(self) -> None:
        if self._building:
            return
        shutil.rmtree(self.build_path.parent, ignore_errors=True)  # a failed run's copy
        self.build_path.parent.mkdir(parents=True)
        if self.path.exists():
            checkpoint(self.path)  # fold its write-ahead log in, so one file holds it all
            shutil.copy2(self.path, self.build_path)
        self._building = True

    def stage(self, lake: Lake, spec: DatasetSpec, manifest: Sequence[ManifestEntry]) -> int:
        self._begin()
        files = lake.month_files()
        return rebuild_duckdb_staging(
            str(self.build_path),
            spec,
            lake.root,
            self.settings.staging_dataset,
            [files[month] for month in sorted(files)],
            manifest,
        )

    def build(self, logger: Logger) -> None:
        self._begin()
        try:
            run_dbt_build(
                self.settings,
                {"CRIME_DUCKDB_PATH": str(self.build_path)},
                logger,
                kept=f"{self.path} keeps its last good build while the lake keeps the months "
                "this run loaded",
            )
        finally:
            release_duckdb()

    def data_quality(self, months: Sequence[str]) -> list[dict[str, object]]:
        return duckdb_data_quality(str(self.build_path if self._building else self.path), months)

    def publish(self) -> None:
        if not self._building:
            return
        checkpoint(self.build_path)
        os.replace(self.build_path, self.path)
        shutil.rmtree(self.build_path.parent, ignore_errors=True)
        self._building = False


_LOCK_HOLDER_RE = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def checkpoint(path: Path) -> None:
    """Write the file's WAL into it; one sentence when another process holds the file."""
    import duckdb

    try:
        with duckdb.connect(str(path)) as con:
            con.execute("checkpoint")
    except duckdb.IOException as exc:
        holder = _LOCK_HOLDER_RE.search(str(exc))
        who = f"PID {holder['pid']}, {holder['program']}" if holder else "another process"
        raise WarehouseBusyError(
            f"The DuckDB file {path} is open in another process ({who}): close it there, "
            "read-only readers such as a dashboard too, then run again."
        ) from None


def release_duckdb() -> None:
    """Close the DuckDB handle dbt-duckdb caches for the life of the process.

    Left open, it keeps the database file locked with dbt's configuration (a later connection
    in this process fails) and is torn down so late at exit that duckdb reports leaks.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env: Any = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if env is not None:
        env.close()
