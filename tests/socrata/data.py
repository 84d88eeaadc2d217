"""Synthetic SPD crime rows shaped like today's `tazs-3rd5` dataset (NIBRS field names)."""

from __future__ import annotations

import bisect
import calendar
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

Row = dict[str, str | None]
T = TypeVar("T")

FIELDS: tuple[str, ...] = (
    "report_number",
    "report_date_time",
    "offense_id",
    "offense_date",
    "nibrs_group_a_b",
    "nibrs_crime_against_category",
    "offense_sub_category",
    "shooting_type_group",
    "block_address",
    "latitude",
    "longitude",
    "beat",
    "precinct",
    "sector",
    "neighborhood",
    "reporting_area",
    "offense_category",
    "nibrs_offense_code_description",
    "nibrs_offense_code",
    "census_block_2020",
)

# the live dataset types latitude/longitude as text too: all but the two timestamps are text
FIELD_TYPES: dict[str, str] = {
    field: "calendar_date" if field in ("report_date_time", "offense_date") else "text"
    for field in FIELDS
}

SYSTEM_FIELDS: tuple[str, ...] = (":id", ":created_at", ":updated_at")
SYSTEM_TYPES: dict[str, str] = {
    ":id": "row_identifier",
    ":created_at": "fixed_timestamp",
    ":updated_at": "fixed_timestamp",
}

# one fixed publication time keeps generated data byte-identical between runs
GENERATED_AT = "2024-05-02T10:11:12.345Z"


@dataclass(frozen=True)
class Offense:
    code: str
    description: str
    sub_category: str
    against: str
    category: str
    group: str | None
    weight: int


OFFENSES: tuple[Offense, ...] = (
    Offense("13B", "Simple Assault", "ASSAULT OFFENSES", "PERSON", "VIOLENT CRIME", "A", 12),
    Offense("13A", "Aggravated Assault", "ASSAULT OFFENSES", "PERSON", "VIOLENT CRIME", "A", 5),
    Offense("13C", "Intimidation", "ASSAULT OFFENSES", "PERSON", "ALL OTHER", "A", 3),
    Offense("120", "Robbery", "ROBBERY", "PROPERTY", "VIOLENT CRIME", "A", 3),
    Offense(
        "09A",
        "Murder & Nonnegligent Manslaughter",
        "HOMICIDE OFFENSES",
        "PERSON",
        "VIOLENT CRIME",
        "A",
        1,
    ),
    Offense(
        "23F", "Theft From Motor Vehicle", "LARCENY-THEFT", "PROPERTY", "PROPERTY CRIME", "A", 14
    ),
    Offense("23H", "All Other Larceny", "LARCENY-THEFT", "PROPERTY", "PROPERTY CRIME", "A", 14),
    Offense("23C", "Shoplifting", "LARCENY-THEFT", "PROPERTY", "PROPERTY CRIME", "A", 8),
    Offense(
        "220",
        "Burglary/Breaking & Entering",
        "BURGLARY/BREAKING&ENTERING",
        "PROPERTY",
        "PROPERTY CRIME",
        "A",
        9,
    ),
    Offense(
        "240", "Motor Vehicle Theft", "MOTOR VEHICLE THEFT", "PROPERTY", "PROPERTY CRIME", "A", 9
    ),
    Offense(
        "290",
        "Destruction/Damage/Vandalism of Property",
        "DESTRUCTION/DAMAGE/VANDALISM OF PROPERTY",
        "PROPERTY",
        "PROPERTY CRIME",
        "A",
        10,
    ),
    Offense(
        "26A",
        "False Pretenses/Swindle/Confidence Game",
        "FRAUD OFFENSES",
        "PROPERTY",
        "PROPERTY CRIME",
        "A",
        3,
    ),
    Offense(
        "35A", "Drug/Narcotic Violations", "DRUG/NARCOTIC OFFENSES", "SOCIETY", "ALL OTHER", "A", 2
    ),
    Offense(
        "520", "Weapon Law Violations", "WEAPON LAW VIOLATIONS", "SOCIETY", "ALL OTHER", "A", 2
    ),
    Offense(
        "90D",
        "Driving Under the Influence",
        "DRIVING UNDER THE INFLUENCE",
        "SOCIETY",
        "ALL OTHER",
        "B",
        2,
    ),
    Offense("90Z", "All Other Offenses", "ALL OTHER OFFENSES", "ANY", "ALL OTHER", "B", 2),
    Offense("999", "Not Reportable to NIBRS", "999", "NOT_A_CRIME", "ALL OTHER", None, 1),
)

PRECINCT_SECTORS: dict[str, tuple[str, ...]] = {
    "North": ("B", "J", "L", "N", "U"),
    "East": ("C", "E", "G"),
    "South": ("O", "R", "S"),
    "West": ("D", "K", "M", "Q"),
    "Southwest": ("F", "W"),
}

PRECINCTS: tuple[str, ...] = tuple(PRECINCT_SECTORS)

NEIGHBORHOODS: tuple[str, ...] = (
    "FREMONT",
    "CAPITOL HILL",
    "BALLARD NORTH",
    "BALLARD SOUTH",
    "DOWNTOWN COMMERCIAL",
    "BELLTOWN",
    "QUEEN ANNE",
    "UNIVERSITY",
    "NORTHGATE",
    "WALLINGFORD",
    "SLU/CASCADE",
    "CHINATOWN/INTERNATIONAL DISTRICT",
    "RAINIER BEACH",
    "COLUMBIA CITY",
    "GEORGETOWN",
    "WEST SEATTLE",
    "ALASKA JUNCTION",
    "MAGNOLIA",
    "LAKE CITY",
    "ROOSEVELT/RAVENNA",
)

STREETS: tuple[str, ...] = (
    "AURORA AVE N",
    "3RD AVE",
    "PINE ST",
    "RAINIER AVE S",
    "CALIFORNIA AVE SW",
    "NW MARKET ST",
    "BROADWAY E",
    "UNIVERSITY WAY NE",
    "LAKE CITY WAY NE",
    "MLK JR WAY S",
)

# values that break naive CSV writers and readers: commas, quotes, newlines, non-ASCII
AWKWARD_ADDRESSES: tuple[str, ...] = (
    '1XX BLOCK OF "A" ST, APT 3\nREAR',
    "CAFÉ ÖSTERGÅRD, 12XX BLOCK OF NE 45TH ST",
    'PIER 66, "BELL HARBOR"',
    "8XX BLOCK OF 5TH AVE\r\nLOBBY",
    "SØNDERGÅRD PL / 2ND AVE — NÆRHEDEN",
)

SHOOTING_TYPES: tuple[str, ...] = ("Non-Fatal Shooting", "Fatal Shooting", "Shots Fired")

OFFENSE_CUM_WEIGHTS: tuple[int, ...] = tuple(
    sum(offense.weight for offense in OFFENSES[: index + 1]) for index in range(len(OFFENSES))
)

ROW_ID_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"


def invalid_utf8(raw: bytes) -> str:
    """A row value the server sends as exactly these bytes, even where they are not UTF-8.

    Bytes that are not UTF-8 are held as surrogate escapes (`b"CAF\\xc9"` -> `"CAF\\udcc9"`), which
    the server encodes back to the raw bytes in CSV and JSON bodies alike.
    """
    return raw.decode("utf-8", "surrogateescape")


def month_of(row: Row) -> str | None:
    """The report month ("YYYY-MM") of a row, None when its report_date_time is null."""
    value = row.get("report_date_time")
    return value[:7] if value else None


def generate_rows(
    months: list[str], rows_per_month: int, seed: int, null_report_rows: int = 0
) -> list[Row]:
    """Deterministic rows: `rows_per_month` offenses per "YYYY-MM" month plus null-dated extras."""
    rng = random.Random(seed)
    total = len(months) * rows_per_month + null_report_rows
    # ids drawn from a wide range have varying lengths, so string order differs from numeric order
    offense_ids = [str(n) for n in rng.sample(range(1, 10_000_000), total)]
    row_ids = _row_ids(rng, total)
    report_serial = _below(rng, 100_000, 400_000)
    rows: list[Row] = []
    for month in months:
        start, seconds = _month_span(month)
        index = 0
        while index < rows_per_month:
            report_serial += _below(rng, 1, 4)
            reported = start + timedelta(seconds=_below(rng, seconds))
            # one report holds 1-3 offenses that share its number and its report_date_time
            for _ in range(min(_pick(rng, (1, 1, 1, 2, 3)), rows_per_month - index)):
                offense = _offense(rng)
                row = _offense_row(rng, offense, index, reported)
                row["report_number"] = f"{reported.year}-{report_serial:06d}"
                rows.append(row)
                index += 1
    for index in range(null_report_rows):
        offense = _offense(rng)
        row = _offense_row(rng, offense, index, None)
        row["report_number"] = f"{months[0][:4] if months else '2024'}-{990_000 + index:06d}"
        rows.append(row)
    for row, offense_id, row_id in zip(rows, offense_ids, row_ids, strict=True):
        row["offense_id"] = offense_id
        row[":id"] = row_id
        row[":created_at"] = GENERATED_AT
        row[":updated_at"] = GENERATED_AT
    return [{key: row[key] for key in (*FIELDS, *SYSTEM_FIELDS)} for row in rows]


def month_range(start: str, end: str) -> list[str]:
    """Every "YYYY-MM" from start to end inclusive."""
    year, month = (int(part) for part in start.split("-"))
    last = tuple(int(part) for part in end.split("-"))
    months: list[str] = []
    while (year, month) <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _month_span(month: str) -> tuple[datetime, int]:
    year, number = (int(part) for part in month.split("-"))
    days = calendar.monthrange(year, number)[1]
    return datetime(year, number, 1), days * 86_400


def _row_ids(rng: random.Random, count: int) -> list[str]:
    seen: set[str] = set()
    ids: list[str] = []
    while len(ids) < count:
        bits = rng.getrandbits(40)
        chars = "".join(ROW_ID_ALPHABET[(bits >> shift) & 31] for shift in range(0, 40, 5))
        row_id = f"row-{chars[:4]}-{chars[4:]}"
        if row_id not in seen:
            seen.add(row_id)
            ids.append(row_id)
    return ids


def _offense_row(
    rng: random.Random, offense: Offense, index: int, reported: datetime | None
) -> Row:
    row: Row = {
        "report_date_time": _timestamp(reported) if reported else None,
        "offense_date": _offense_date(rng, reported),
        "nibrs_group_a_b": offense.group,
        "nibrs_crime_against_category": offense.against,
        "offense_sub_category": offense.sub_category,
        "shooting_type_group": _shooting(rng, offense),
        "block_address": _block_address(rng, index),
        "reporting_area": _maybe_null(rng, str(_below(rng, 1, 2_000)), 0.03),
        "offense_category": offense.category,
        "nibrs_offense_code_description": offense.description,
        "nibrs_offense_code": offense.code,
        "census_block_2020": _maybe_null(rng, f"53033{_below(rng, 10**9, 10**10)}", 0.02),
    }
    row.update(_location(rng))
    row.update(_coordinates(rng))
    return row


def _offense_date(rng: random.Random, reported: datetime | None) -> str:
    anchor = reported or datetime(2020, 1, 1)
    # most offenses are reported within hours, a few weeks later
    hours = _below(rng, 0, 72) if rng.random() < 0.9 else _below(rng, 72, 24 * 60)
    happened = anchor - timedelta(hours=hours, minutes=_below(rng, 60))
    return _timestamp(happened.replace(second=0))


def _shooting(rng: random.Random, offense: Offense) -> str | None:
    if offense.code in ("13A", "09A", "520") and rng.random() < 0.15:
        return _pick(rng, SHOOTING_TYPES)
    return None


def _block_address(rng: random.Random, index: int) -> str | None:
    # fixed positions guarantee awkward values even in tiny test datasets
    if index % 40 == 3:
        return AWKWARD_ADDRESSES[(index // 40) % len(AWKWARD_ADDRESSES)]
    draw = rng.random()
    if draw < 0.01:
        return None
    if draw < 0.02:
        return "REDACTED"
    if draw < 0.2:
        return f"{_pick(rng, STREETS)} / {_pick(rng, STREETS)}"
    return f"{_below(rng, 1, 130)}XX BLOCK OF {_pick(rng, STREETS)}"


def _location(rng: random.Random) -> dict[str, str | None]:
    draw = rng.random()
    if draw < 0.01:
        return {"precinct": "OOJ", "sector": "-", "beat": "-", "neighborhood": "UNKNOWN"}
    if draw < 0.02:
        return {"precinct": "UNKNOWN", "sector": None, "beat": None, "neighborhood": "UNKNOW"}
    if draw < 0.025:
        return {"precinct": "-", "sector": "99", "beat": "99", "neighborhood": None}
    precinct = _pick(rng, PRECINCTS)
    sector = _pick(rng, PRECINCT_SECTORS[precinct])
    if rng.random() < 0.01:
        sector = f"99{sector}"
    neighborhood = _pick(rng, NEIGHBORHOODS) if rng.random() < 0.97 else "UNKNOWN"
    return {
        "precinct": precinct,
        "sector": sector,
        "beat": f"{sector[-1]}{_below(rng, 1, 4)}",
        "neighborhood": neighborhood,
    }


def _coordinates(rng: random.Random) -> dict[str, str | None]:
    draw = rng.random()
    if draw < 0.02:
        return {"latitude": "REDACTED", "longitude": "REDACTED"}
    if draw < 0.03:
        return {"latitude": "-1.0", "longitude": "-1.0"}
    if draw < 0.035:
        return {"latitude": None, "longitude": None}
    return {
        "latitude": f"{rng.uniform(47.49, 47.74):.9f}",
        "longitude": f"{rng.uniform(-122.44, -122.24):.9f}",
    }


def _maybe_null(rng: random.Random, value: str, probability: float) -> str | None:
    return None if rng.random() < probability else value


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _below(rng: random.Random, start: int, stop: int | None = None) -> int:
    # random() scaled is several times faster than randrange, which matters at 170k rows
    low, high = (0, start) if stop is None else (start, stop)
    return low + int(rng.random() * (high - low))


def _pick(rng: random.Random, options: Sequence[T]) -> T:
    return options[int(rng.random() * len(options))]


def _offense(rng: random.Random) -> Offense:
    return OFFENSES[bisect.bisect(OFFENSE_CUM_WEIGHTS, rng.random() * OFFENSE_CUM_WEIGHTS[-1])]
