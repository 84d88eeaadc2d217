"""Runs parsed SoQL against an immutable snapshot of the rows, with the caches that keep it fast."""

from __future__ import annotations

import bisect
import json
import random
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any

from .data import SYSTEM_FIELDS, SYSTEM_TYPES, Row
from .soql import (
    Aggregate,
    Between,
    BoolOp,
    Column,
    Compare,
    Condition,
    CountAll,
    Expr,
    InList,
    IsNull,
    Literal,
    Not,
    SelectItem,
    SoqlError,
    Star,
    Trunc,
    malformed,
    no_such_column,
    parse_group,
    parse_order,
    parse_select,
    parse_where,
    type_mismatch,
)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 50_000
KNOWN_PARAMS = ("$select", "$where", "$order", "$group", "$limit", "$offset")
BODY_CACHE_SIZE = 128

TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3})\d*)?)?)?Z?$"
)
TRUNC_LENGTH = {"date_trunc_y": 4, "date_trunc_ym": 7, "date_trunc_ymd": 10}
TRUNC_PADDING = {
    "date_trunc_y": "-01-01T00:00:00.000",
    "date_trunc_ym": "-01T00:00:00.000",
    "date_trunc_ymd": "T00:00:00.000",
}
SOQL_TYPES = {
    "calendar_date": "floating_timestamp",
    "fixed_timestamp": "fixed_timestamp",
    "number": "number",
    "row_identifier": "text",
}

Getter = Callable[[Row], Any]
Predicate = Callable[[Row], bool | None]


@dataclass(frozen=True)
class Output:
    """One column of a result: its name, the expression that fills it and its SoQL type."""

    name: str
    expr: Expr
    soql_type: str


@dataclass(frozen=True)
class Result:
    body: bytes
    content_type: str
    fields: tuple[str, ...]
    types: tuple[str, ...]


class Table:
    """Rows and schema that never change once built; a mutation builds a new Table."""

    def __init__(
        self, dataset_id: str, rows: list[Row], fields: tuple[str, ...], types: dict[str, str]
    ) -> None:
        self.dataset_id = dataset_id
        self.rows = rows
        self.fields = fields
        self.types = {**types, **SYSTEM_TYPES}
        # builds take the build lock, so the cheap cache lookups never wait behind a 170k-row sort
        self._build_lock = threading.Lock()
        self._lock = threading.Lock()
        self._range_indexes: dict[str, tuple[list[Any], list[int]]] = {}
        self._ranks: dict[tuple[tuple[Expr, bool], ...], tuple[list[int], bool]] = {}
        self._fragments: dict[tuple[str, tuple[str, ...]], list[str | None]] = {}
        self._bodies: OrderedDict[tuple[Any, ...], Result] = OrderedDict()

    def soql_type(self, column: Column) -> str:
        data_type = self.types.get(column.name)
        if data_type is None:
            raise no_such_column(column.name, self.dataset_id, column.text, column.position)
        return SOQL_TYPES.get(data_type, "text")

    def range_index(self, column: str) -> tuple[list[Any], list[int]]:
        """Non-null values of a column, sorted, with their row positions, for bisecting ranges."""
        with self._build_lock:
            if column not in self._range_indexes:
                pairs = sorted(
                    (row[column], position)
                    for position, row in enumerate(self.rows)
                    if row.get(column) is not None
                )
                self._range_indexes[column] = ([p[0] for p in pairs], [p[1] for p in pairs])
            return self._range_indexes[column]

    def rank(self, order: tuple[tuple[Expr, bool], ...]) -> tuple[list[int], bool]:
        """Dense rank of every row under an order, and whether that order is total (no ties)."""
        with self._build_lock:
            if order not in self._ranks:
                self._ranks[order] = self._build_rank(order)
            return self._ranks[order]

    def _build_rank(self, order: tuple[tuple[Expr, bool], ...]) -> tuple[list[int], bool]:
        getters = [getter_for(self, expr) for expr, _ in order]
        keys = [tuple(_null_last(get(row)) for get in getters) for row in self.rows]
        positions = list(range(len(self.rows)))
        if len({desc for _, desc in order}) <= 1:
            positions.sort(key=keys.__getitem__, reverse=bool(order and order[0][1]))
        else:
            # stable passes from the last key to the first give mixed ASC/DESC
            for index in reversed(range(len(order))):
                positions.sort(key=partial(_key_at, keys, index), reverse=order[index][1])
        rank = [0] * len(positions)
        dense = 0
        for step, position in enumerate(positions):
            if step and keys[position] != keys[positions[step - 1]]:
                dense += 1
            rank[position] = dense
        return rank, dense + 1 == len(positions) or not positions

    def fragments(self, fmt: str, names: tuple[str, ...]) -> list[str | None]:
        """Rendered CSV lines or JSON objects per row for one projection, filled on first read."""
        with self._lock:
            key = (fmt, names)
            if key not in self._fragments:
                self._fragments[key] = [None] * len(self.rows)
            return self._fragments[key]

    def cached(self, key: tuple[Any, ...]) -> Result | None:
        with self._lock:
            result = self._bodies.get(key)
            if result is not None:
                self._bodies.move_to_end(key)
            return result

    def store(self, key: tuple[Any, ...], result: Result) -> None:
        with self._lock:
            self._bodies[key] = result
            while len(self._bodies) > BODY_CACHE_SIZE:
                self._bodies.popitem(last=False)

    def warm(self, order: tuple[str, ...]) -> None:
        """Build the index and rank the pipeline's usual month query needs, ahead of its request."""
        if order and all(name in self.types for name in order):
            self.range_index(order[0])
            self.rank(tuple((Column(name), False) for name in order))
        # render the pipeline's `:updated_at, *` CSV pages first, then `*`, so a page is a join
        projections = (("csv", (":updated_at", *self.fields)), ("csv", self.fields))
        for fmt, names in (*projections, ("json", self.fields)):
            fragments = self.fragments(fmt, names)
            extract = _extractor(names)
            render = csv_line if fmt == "csv" else partial(json_object, names)
            for position, row in enumerate(self.rows):
                if fragments[position] is None:
                    fragments[position] = render(extract(row))


def run_query(table: Table, params: dict[str, str], fmt: str, serial: int) -> Result:
    """Answer one `/resource/` request; `serial` seeds the arbitrary order of unordered results."""
    for name in params:
        if name.startswith("$") and not name.startswith("$$") and name not in KNOWN_PARAMS:
            raise malformed(f"Unrecognized arguments [{name}]")
    key = (fmt, tuple(sorted(params.items())))
    cached = table.cached(key)
    if cached is not None:
        return cached
    limit, offset = _paging(params)
    outputs = _outputs(table, params.get("$select", "*"))
    condition = _condition(table, params)
    group = _group(table, params.get("$group"), outputs)
    order = _order(params.get("$order"), outputs)
    aggregated = group is not None or any(isinstance(o.expr, CountAll | Aggregate) for o in outputs)
    rng = random.Random(serial)
    if aggregated:
        records, deterministic = _grouped(table, condition, group or [], outputs, order, rng)
        lines = _render_records(records[offset : offset + limit], outputs, fmt)
    else:
        positions, deterministic = _plain(table, condition, order, rng)
        lines = _render_rows(table, positions[offset : offset + limit], outputs, fmt)
    result = _result(lines, outputs, fmt)
    if deterministic:
        table.store(key, result)
    return result


def _paging(params: dict[str, str]) -> tuple[int, int]:
    limit = _non_negative(params, "$limit", DEFAULT_LIMIT)
    if limit > MAX_LIMIT:
        raise SoqlError(
            "query.execution.limit-exceeded",
            f"Limit {limit} exceeds the maximum of {MAX_LIMIT}",
            {"limit": limit, "maximum": MAX_LIMIT},
        )
    return limit, _non_negative(params, "$offset", 0)


def _non_negative(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.strip().isdigit():
        raise malformed(f"{name} must be a non-negative integer, got `{text}'")
    return int(text)


def _outputs(table: Table, text: str) -> list[Output]:
    outputs: list[Output] = []
    for item in parse_select(text):
        outputs.extend(_expand(table, item))
    return outputs


def _expand(table: Table, item: SelectItem) -> list[Output]:
    if isinstance(item.expr, Star):
        names = SYSTEM_FIELDS if item.expr.system else table.fields
        return [Output(name, Column(name), table.soql_type(Column(name))) for name in names]
    expr = item.expr
    if isinstance(expr, CountAll):
        return [Output(item.alias or "count", expr, "number")]
    if isinstance(expr, Aggregate):
        column_type = table.soql_type(expr.column)
        return [Output(item.alias or f"{expr.function}_{expr.column.name}", expr, column_type)]
    if isinstance(expr, Trunc):
        _check_temporal(table, expr)
        default = f"{expr.function}_{expr.column.name}"
        return [Output(item.alias or default, expr, "floating_timestamp")]
    return [Output(item.alias or expr.name, expr, table.soql_type(expr))]


def _check_temporal(table: Table, expr: Trunc) -> None:
    if table.soql_type(expr.column) not in ("floating_timestamp", "fixed_timestamp"):
        raise type_mismatch(
            f"Type mismatch for {expr.function}, is {table.soql_type(expr.column)}",
            expr.column.text,
            expr.column.position,
        )


def _condition(table: Table, params: dict[str, str]) -> Condition | None:
    parts: list[Condition] = []
    if params.get("$where", "").strip():
        parts.append(parse_where(params["$where"]))
    for name, value in params.items():
        # SODA's simple filters: `?precinct=North` means precinct = 'North'
        if not name.startswith("$"):
            parts.append(Compare(Column(name.lower(), 0, name), "=", Literal(value, False)))
    for part in parts:
        _bind(table, part)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))


def _bind(table: Table, condition: Condition) -> None:
    """Check columns and literal types up front, so errors are 400s before any row is read."""
    if isinstance(condition, BoolOp):
        for part in condition.parts:
            _bind(table, part)
    elif isinstance(condition, Not):
        _bind(table, condition.part)
    else:
        soql_type = _expr_type(table, condition.expr)
        for literal in _literals(condition):
            coerce(literal, soql_type)


def _literals(condition: Condition) -> tuple[Literal, ...]:
    if isinstance(condition, Compare):
        return (condition.literal,)
    if isinstance(condition, Between):
        return (condition.low, condition.high)
    if isinstance(condition, InList):
        return condition.values
    return ()


def _key_at(keys: Sequence[tuple[Any, ...]], index: int, position: int) -> Any:
    return keys[position][index]


def _expr_type(table: Table, expr: Expr) -> str:
    if isinstance(expr, CountAll):
        raise malformed("count(*) is not allowed here")
    if isinstance(expr, Aggregate):
        raise malformed(f"{expr.function}() is not allowed here")
    if isinstance(expr, Trunc):
        _check_temporal(table, expr)
        return "floating_timestamp"
    return table.soql_type(expr)


def coerce(literal: Literal, soql_type: str) -> Any:
    """The literal as the column's values compare, or a type-mismatch 400 (e.g. `'2023-4'`)."""
    where = (literal.text, literal.position)
    if soql_type == "number":
        try:
            return float(literal.value)
        except ValueError:
            raise type_mismatch(f"Cannot convert `{literal.value}' to number", *where) from None
    if literal.is_number:
        message = f"Type mismatch: {soql_type} compared with number {literal.value}"
        raise type_mismatch(message, *where)
    if soql_type in ("floating_timestamp", "fixed_timestamp"):
        normalized = normalize_timestamp(literal.value)
        if normalized is None:
            raise type_mismatch(f"Cannot convert `{literal.value}' to {soql_type}", *where)
        return normalized + ("Z" if soql_type == "fixed_timestamp" else "")
    return literal.value


def normalize_timestamp(text: str) -> str | None:
    """`2024-05-01`, `2024-05-01T00:00:00` and `...00.000` all become `2024-05-01T00:00:00.000`."""
    match = TIMESTAMP_RE.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, millis = match.groups()
    if not ("01" <= month <= "12" and "01" <= day <= "31"):
        return None
    clock = f"{hour or '00'}:{minute or '00'}:{second or '00'}.{(millis or '').ljust(3, '0')}"
    return f"{year}-{month}-{day}T{clock}"


def getter_for(table: Table, expr: Expr, raw: bool = False) -> Getter:
    """Reads an expression from a row; numbers compare as floats unless `raw` (output) is asked."""
    if isinstance(expr, Trunc):
        length = TRUNC_LENGTH[expr.function]
        padding = TRUNC_PADDING[expr.function]
        name = expr.column.name

        def truncate(row: Row) -> str | None:
            value = row.get(name)
            return None if value is None else value[:length] + padding

        return truncate
    if isinstance(expr, CountAll):
        raise malformed("count(*) is not allowed here")
    if isinstance(expr, Aggregate):
        raise malformed(f"{expr.function}() is not allowed here")
    name = expr.name
    if table.soql_type(expr) == "number" and not raw:
        return lambda row: _number(row.get(name))
    return lambda row: row.get(name)


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def compile_condition(table: Table, condition: Condition) -> Predicate:
    """A row predicate with SQL's three-valued logic: a comparison with null is unknown (None)."""
    if isinstance(condition, BoolOp):
        parts = [compile_condition(table, part) for part in condition.parts]
        return _all(parts) if condition.op == "and" else _any(parts)
    if isinstance(condition, Not):
        inner = compile_condition(table, condition.part)
        return lambda row: None if (value := inner(row)) is None else not value
    soql_type = _expr_type(table, condition.expr)
    get = getter_for(table, condition.expr)
    if isinstance(condition, IsNull):
        negated = condition.negated
        return lambda row: (get(row) is None) != negated
    if isinstance(condition, Between):
        test = _between(coerce(condition.low, soql_type), coerce(condition.high, soql_type))
    elif isinstance(condition, InList):
        options = {coerce(literal, soql_type) for literal in condition.values}
        test = options.__contains__
    else:
        test = _comparison(condition.op, coerce(condition.literal, soql_type))
    negated = getattr(condition, "negated", False)
    return lambda row: None if (value := get(row)) is None else test(value) != negated


def _between(low: Any, high: Any) -> Callable[[Any], bool]:
    # inclusive at both ends, which is why month windows must not use it
    return lambda value: low <= value <= high


def _comparison(op: str, bound: Any) -> Callable[[Any], bool]:
    return {
        "=": bound.__eq__,
        "!=": bound.__ne__,
        ">": bound.__lt__,
        ">=": bound.__le__,
        "<": bound.__gt__,
        "<=": bound.__ge__,
    }[op]


def _all(parts: list[Predicate]) -> Predicate:
    def evaluate(row: Row) -> bool | None:
        unknown = False
        for part in parts:
            value = part(row)
            if value is False:
                return False
            unknown = unknown or value is None
        return None if unknown else True

    return evaluate


def _any(parts: list[Predicate]) -> Predicate:
    def evaluate(row: Row) -> bool | None:
        unknown = False
        for part in parts:
            value = part(row)
            if value is True:
                return True
            unknown = unknown or value is None
        return None if unknown else False

    return evaluate


def _group(table: Table, text: str | None, outputs: list[Output]) -> list[Expr] | None:
    if text is None or not text.strip():
        return None
    exprs = [_resolve_alias(expr, outputs) for expr in parse_group(text)]
    for expr in exprs:
        _expr_type(table, expr)
    return exprs


def _order(text: str | None, outputs: list[Output]) -> tuple[tuple[Expr, bool], ...]:
    if text is None or not text.strip():
        return ()
    return tuple((_resolve_alias(expr, outputs), desc) for expr, desc in parse_order(text))


def _resolve_alias(expr: Expr, outputs: list[Output]) -> Expr:
    if isinstance(expr, Column):
        for output in outputs:
            if output.name == expr.name and output.expr != expr:
                return output.expr
    return expr


def _candidates(table: Table, condition: Condition | None) -> tuple[Iterable[int], bool]:
    """Row positions that can match, and whether all of them do (the condition is one range)."""
    everything = range(len(table.rows))
    if condition is None:
        return everything, True
    bounds = _bounds(table, condition)
    if bounds is None:
        return everything, False
    column, low, high, exact = bounds
    values, positions = table.range_index(column)
    start = 0 if low is None else _bisect_low(values, *low)
    stop = len(values) if high is None else _bisect_high(values, *high)
    return (positions[start:stop] if start < stop else []), exact


def _bisect_low(values: list[Any], value: Any, inclusive: bool) -> int:
    return bisect.bisect_left(values, value) if inclusive else bisect.bisect_right(values, value)


def _bisect_high(values: list[Any], value: Any, inclusive: bool) -> int:
    return bisect.bisect_right(values, value) if inclusive else bisect.bisect_left(values, value)


Bound = tuple[Any, bool] | None


def _bounds(table: Table, condition: Condition) -> tuple[str, Bound, Bound, bool] | None:
    """The range one text or timestamp column is held to by a condition that ANDs comparisons."""
    parts = condition.parts if isinstance(condition, BoolOp) and condition.op == "and" else ()
    parts = parts or (condition,)
    ranged = [part for part in parts if isinstance(part, Compare) and _is_range(table, part)]
    if not ranged or not isinstance(ranged[0], Compare) or not isinstance(ranged[0].expr, Column):
        return None
    column = ranged[0].expr
    low: Bound = None
    high: Bound = None
    used = 0
    for part in ranged:
        if not isinstance(part, Compare) or part.expr != column:
            continue
        used += 1
        value = coerce(part.literal, table.soql_type(column))
        if part.op in (">", ">=", "="):
            low = _tighter(low, value, part.op != ">", lower=True)
        if part.op in ("<", "<=", "="):
            high = _tighter(high, value, part.op != "<", lower=False)
    return column.name, low, high, used == len(parts)


def _is_range(table: Table, part: Condition) -> bool:
    return (
        isinstance(part, Compare)
        and isinstance(part.expr, Column)
        and part.op != "!="
        and table.soql_type(part.expr) != "number"
    )


def _tighter(current: Bound, value: Any, inclusive: bool, lower: bool) -> Bound:
    if current is None:
        return value, inclusive
    if value == current[0]:
        return value, inclusive and current[1]
    return (value, inclusive) if (value > current[0]) == lower else current


def _plain(
    table: Table,
    condition: Condition | None,
    order: tuple[tuple[Expr, bool], ...],
    rng: random.Random,
) -> tuple[list[int], bool]:
    """Matching row positions in result order, and whether that order is the same every time."""
    rows = table.rows
    predicate = compile_condition(table, condition) if condition else None
    candidates, exact = _candidates(table, condition)
    if exact or predicate is None:
        positions = list(candidates)
    else:
        positions = [position for position in candidates if predicate(rows[position])]
    if not order:
        rng.shuffle(positions)
        return positions, False
    rank, total = table.rank(order)
    if not total:
        # ties come back in a different order each time, as on the real service
        rng.shuffle(positions)
    positions.sort(key=rank.__getitem__)
    return positions, total


def _grouped(
    table: Table,
    condition: Condition | None,
    group: list[Expr],
    outputs: list[Output],
    order: tuple[tuple[Expr, bool], ...],
    rng: random.Random,
) -> tuple[list[list[Any]], bool]:
    for output in outputs:
        if not isinstance(output.expr, CountAll | Aggregate) and output.expr not in group:
            raise malformed(f"Column {output.name} is neither grouped nor aggregated")
    aggregates = [o.expr for o in outputs if isinstance(o.expr, Aggregate)]
    if aggregates:
        counts, extremes = _aggregate(table, condition, group, aggregates)
    else:
        counts, extremes = _count(table, condition, group), {}
    records = [
        [_cell(o.expr, key, count, extremes.get(key, {}), group) for o in outputs]
        for key, count in counts.items()
    ]
    rng.shuffle(records)
    for expr, desc in reversed(order):
        index = _output_index(expr, outputs)
        records.sort(key=partial(_null_last_at, index), reverse=desc)
    text = [[None if value is None else str(value) for value in record] for record in records]
    return text, bool(order) or len(records) <= 1


def _cell(
    expr: Expr, key: tuple[Any, ...], count: int, extremes: dict[Expr, Any], group: list[Expr]
) -> Any:
    if isinstance(expr, CountAll):
        return count
    if isinstance(expr, Aggregate):
        return extremes.get(expr)
    return key[group.index(expr)]


def _aggregate(
    table: Table, condition: Condition | None, group: list[Expr], aggregates: list[Aggregate]
) -> tuple[dict[tuple[Any, ...], int], dict[tuple[Any, ...], dict[Expr, Any]]]:
    """Counts and max/min per group, row by row: slower than _count, fine for tests."""
    candidates, exact = _candidates(table, condition)
    selected: Iterable[Row] = map(table.rows.__getitem__, candidates)
    if not exact and condition is not None:
        selected = filter(compile_condition(table, condition), selected)
    getters = [getter_for(table, expr, raw=True) for expr in group]
    counts: dict[tuple[Any, ...], int] = {}
    extremes: dict[tuple[Any, ...], dict[Expr, Any]] = {}
    for row in selected:
        key = tuple(get(row) for get in getters)
        counts[key] = counts.get(key, 0) + 1
        current = extremes.setdefault(key, {})
        for agg in aggregates:
            value = row.get(agg.column.name)
            if value is None:
                continue
            best = current.get(agg)
            pick = max if agg.function == "max" else min
            current[agg] = value if best is None else pick(best, value)
    return counts, extremes


def _count(
    table: Table, condition: Condition | None, group: list[Expr]
) -> dict[tuple[Any, ...], int]:
    """Matching rows counted per group key; C-level map/filter/Counter keep 170k rows quick."""
    candidates, exact = _candidates(table, condition)
    selected: Iterable[Row] = map(table.rows.__getitem__, candidates)
    if not exact and condition is not None:
        selected = filter(compile_condition(table, condition), selected)
    if not group:
        return {(): sum(1 for _ in selected)}
    getters = [getter_for(table, expr, raw=True) for expr in group]
    if len(getters) == 1:
        return {(key,): count for key, count in Counter(map(getters[0], selected)).items()}
    return dict(Counter(tuple(get(row) for get in getters) for row in selected))


def _output_index(expr: Expr, outputs: list[Output]) -> int:
    for index, output in enumerate(outputs):
        if output.expr == expr:
            return index
    raise malformed("$order of a grouped query must name a selected column or alias")


# Nulls sort LAST in an ascending $order and first in a descending one, as on Socrata (its SoQL
# parser defaults nullLast to the direction being ascending, as PostgreSQL does): keys are
# (is null, value), and a descending sort reverses them.
def _null_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value)


def _render_rows(table: Table, positions: list[int], outputs: list[Output], fmt: str) -> list[str]:
    if all(type(output.expr) is Column and output.name == output.expr.name for output in outputs):
        names = tuple(output.name for output in outputs)
        fragments = table.fragments(fmt, names)
        extract = _extractor(names)
        render = csv_line if fmt == "csv" else partial(json_object, names)
        lines: list[str] = []
        for position in positions:
            line = fragments[position]
            if line is None:
                line = fragments[position] = render(extract(table.rows[position]))
            lines.append(line)
        return lines
    getters = [getter_for(table, output.expr, raw=True) for output in outputs]
    records = [[get(table.rows[position]) for get in getters] for position in positions]
    return _render_records(records, outputs, fmt)


def _extractor(names: tuple[str, ...]) -> Callable[[Row], tuple[str | None, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda row: (row.get(name),)
    return itemgetter(*names)


def _render_records(records: list[list[Any]], outputs: list[Output], fmt: str) -> list[str]:
    names = tuple(output.name for output in outputs)
    if fmt == "csv":
        return [csv_line(record) for record in records]
    return [json_object(names, record) for record in records]


def _result(lines: list[str], outputs: list[Output], fmt: str) -> Result:
    names = tuple(output.name for output in outputs)
    types = tuple(output.soql_type for output in outputs)
    if fmt == "csv":
        # the header is quoted like every value; a null is an empty field, never `""`
        body = "\n".join([csv_line(names), *lines]) + "\n"
        return Result(_encode(body), "text/csv; charset=UTF-8", names, types)
    body = "[" + "\n,".join(lines) + "]\n"
    return Result(_encode(body), "application/json; charset=UTF-8", names, types)


def _encode(body: str) -> bytes:
    """UTF-8, except that a value holding surrogate escapes (see data.invalid_utf8) goes out as
    the raw bytes they stand for: invalid UTF-8, as a badly encoded source value would."""
    return body.encode("utf-8", "surrogateescape")


def json_object(names: tuple[str, ...], values: Iterable[str | None]) -> str:
    """Every value a string; null fields are left out of the object, as SODA 2 does."""
    present = {name: value for name, value in zip(names, values, strict=True) if value is not None}
    return json.dumps(present, ensure_ascii=False, separators=(",", ":"))


def csv_line(values: Iterable[str | None]) -> str:
    """RFC 4180 with every value quoted; a null is an empty unquoted field, distinct from `""`."""
    return ",".join(["" if v is None else '"' + v.replace('"', '""') + '"' for v in values])


def _null_last_at(index: int, record: Sequence[object]) -> Any:
    return _null_last(record[index])
