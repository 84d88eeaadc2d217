"""Sources described by data: adding a city is a new spec and a staging model, not a new loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

FieldType = Literal["string", "timestamp", "double", "timestamp_utc"]

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "timestamp_utc": pa.timestamp("us", tz="UTC"),
    "double": pa.float64(),
}


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType = "string"


@dataclass(frozen=True)
class DatasetSpec:
    """One Socrata dataset: where it lives, how it is partitioned, what it must contain."""

    name: str
    portal_url: str
    dataset_id: str
    month_column: str
    key_column: str
    fields: tuple[Field, ...]
    # socrata's hidden system field kept in the lake so revisions can be traced
    updated_at_column: str = "source_updated_at"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.fields)

    @property
    def partition_column(self) -> str:
        return "report_month"

    def arrow_schema(self) -> pa.Schema:
        columns = [pa.field(self.updated_at_column, ARROW_TYPES["timestamp_utc"])]
        columns += [pa.field(field.name, ARROW_TYPES[field.type]) for field in self.fields]
        return pa.schema(columns)

    def with_source(self, portal_url: str, dataset_id: str) -> DatasetSpec:
        return DatasetSpec(
            name=self.name,
            portal_url=portal_url.rstrip("/"),
            dataset_id=dataset_id,
            month_column=self.month_column,
            key_column=self.key_column,
            fields=self.fields,
            updated_at_column=self.updated_at_column,
        )


SPD_CRIME = DatasetSpec(
    name="spd_crime",
    portal_url="https://data.seattle.gov",
    dataset_id="tazs-3rd5",
    month_column="report_date_time",
    key_column="offense_id",
    fields=(
        Field("report_number"),
        Field("report_date_time", "timestamp"),
        Field("offense_id"),
        Field("offense_date", "timestamp"),
        Field("nibrs_group_a_b"),
        Field("nibrs_crime_against_category"),
        Field("offense_sub_category"),
        Field("shooting_type_group"),
        Field("block_address"),
        Field("latitude", "double"),
        Field("longitude", "double"),
        Field("beat"),
        Field("precinct"),
        Field("sector"),
        Field("neighborhood"),
        Field("reporting_area"),
        Field("offense_category"),
        Field("nibrs_offense_code_description"),
        Field("nibrs_offense_code"),
        Field("census_block_2020"),
    ),
)
