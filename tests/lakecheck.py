"""Reading back what a run produced, for assertions: per-month key sets from lake and warehouse."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from tests.socrata.data import month_of


def source_keys(rows: list[dict]) -> dict[str, set[str]]:
    """offense_id per report month as the server holds them ('unknown' for null report time)."""
    keys: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        keys[month_of(row) or "unknown"].add(row["offense_id"])
    return dict(keys)


def lake_keys(lake_root: Path, dataset: str = "spd_crime") -> dict[str, list[str]]:
    """offense_id per partition as the lake's files hold them (a list: duplicates would show)."""
    keys: dict[str, list[str]] = {}
    for path in sorted(Path(lake_root, dataset).glob("report_month=*/*.parquet")):
        month = path.parent.name.split("=", 1)[1]
        keys[month] = pq.read_table(path, columns=["offense_id"]).column(0).to_pylist()
    return keys


def warehouse_keys(duckdb_path: Path) -> dict[str, list[str]]:
    """offense_id per report month in fct_crimes, sorted (a list: duplicates would show)."""
    with duckdb.connect(str(duckdb_path)) as con:
        rows = con.execute("select report_month, offense_id from crime_marts.fct_crimes").fetchall()
    keys: dict[str, list[str]] = defaultdict(list)
    for month, offense_id in rows:
        keys[month].append(offense_id)
    return {month: sorted(ids) for month, ids in keys.items()}


def lake_fingerprint(lake_root: Path) -> dict[str, str]:
    """Every file under the lake with a hash of its bytes: proof that nothing changed."""
    return {
        str(path.relative_to(lake_root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(lake_root).rglob("*"))
        if path.is_file()
    }
