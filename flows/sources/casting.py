"""Text columns to the lake's Arrow schema: a value that fails its type becomes a counted null."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from flows.sources.specs import DatasetSpec

# socrata floating timestamps: 2024-05-01T08:28:24.000 (fraction optional)
_FLOATING_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$"
# system timestamps are UTC: 2024-05-02T10:11:12.345Z
_UTC_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


def _valid_or_null(column: pa.Array, pattern: str) -> tuple[pa.Array, int]:
    ok = pc.match_substring_regex(column, pattern)
    failed = pc.sum(pc.and_(pc.is_valid(column), pc.invert(ok))).as_py() or 0
    return pc.if_else(ok, column, pa.scalar(None, pa.string())), failed


def _to_timestamp(column: pa.Array, utc: bool) -> tuple[pa.Array, int]:
    kept, failed = _valid_or_null(column, _UTC_TS if utc else _FLOATING_TS)
    if utc:
        kept = pc.utf8_slice_codeunits(kept, 0, -1)  # drop the Z; the type carries the zone
    try:
        values = pc.cast(kept, pa.timestamp("us"))
    except pa.ArrowInvalid:
        # well-formed but impossible dates (2024-02-31): parse value by value
        values, extra = _timestamps_one_by_one(kept)
        failed += extra
    if utc:
        values = pc.assume_timezone(values, "UTC")
    return values, failed


def _timestamps_one_by_one(column: pa.Array) -> tuple[pa.Array, int]:
    parsed: list[object] = []
    failed = 0
    for value in column.to_pylist():
        if value is None:
            parsed.append(None)
            continue
        try:
            parsed.append(pa.scalar(value).cast(pa.timestamp("us")).as_py())
        except pa.ArrowInvalid:
            parsed.append(None)
            failed += 1
    return pa.array(parsed, pa.timestamp("us")), failed


def _to_double(column: pa.Array) -> tuple[pa.Array, int]:
    kept, failed = _valid_or_null(column, _NUMBER)
    return pc.cast(pc.utf8_trim_whitespace(kept), pa.float64()), failed


def repair_text(raw: pa.Table, spec: DatasetSpec) -> tuple[pa.Table, dict[str, int]]:
    """Bytes columns as read from a page to text; values that are not valid UTF-8 are counted.

    The source sends UTF-8, but one stray byte (a Latin-1 name, a value cut mid-character) must
    not keep its month from ever loading: in a text column the bad bytes become U+FFFD and the
    rest of the value is kept; in a typed column (a timestamp, a number) the value becomes null.
    Either way it counts per column, under the lake's column name, with the values nulled for
    failing their type, so the run summary and the data-quality artifact show it.
    """
    types = {field.name: field.type for field in spec.fields}
    arrays: list[pa.Array] = []
    counts: dict[str, int] = {}
    for name in raw.column_names:
        column = raw.column(name)
        try:
            arrays.append(pc.cast(column, pa.string()))
            continue
        except pa.ArrowInvalid:
            pass
        text = types.get(name) == "string"
        mended: list[str | None] = []
        bad = 0
        for value in column.to_pylist():
            try:
                mended.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                bad += 1
                mended.append(value.decode("utf-8", "replace") if text else None)
        arrays.append(pa.array(mended, pa.string()))
        counts[spec.updated_at_column if name == ":updated_at" else name] = bad
    return pa.Table.from_arrays(arrays, names=raw.column_names), counts


def convert_table(raw: pa.Table, spec: DatasetSpec) -> tuple[pa.Table, dict[str, int]]:
    """Cast a text table (columns ':updated_at' + the spec's fields) to the lake schema."""
    schema = spec.arrow_schema()
    nulled: dict[str, int] = {}
    arrays: list[pa.Array] = []
    for target in schema:
        source_name = ":updated_at" if target.name == spec.updated_at_column else target.name
        column = raw.column(source_name).combine_chunks()
        if target.type == pa.string():
            converted, failed = column, 0
        elif target.type == pa.float64():
            converted, failed = _to_double(column)
        else:
            converted, failed = _to_timestamp(column, utc=target.type.tz is not None)
        if failed:
            nulled[target.name] = failed
        arrays.append(converted)
    return pa.Table.from_arrays(arrays, schema=schema), nulled
