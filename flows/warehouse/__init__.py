"""Where the data is modelled: staging over the lake, then dbt. `open_warehouse` is the one
switch between DuckDB, BigQuery and none (the lake only); every backend is a `Warehouse`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from flows.errors import ConfigError
from flows.lake.layout import LakeKind, lake_kind, parse_gcs_url

if TYPE_CHECKING:
    from flows.lake import Lake
    from flows.lake.manifest import ManifestEntry
    from flows.settings import Settings
    from flows.sources.specs import DatasetSpec

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class Warehouse(Protocol):
    """Stages the lake, builds the dbt models on it, and reports what staging cleaned."""

    name: str

    def stage(self, lake: Lake, spec: DatasetSpec, manifest: Sequence[ManifestEntry]) -> int | None:
        """Replace the staging relation over the lake and the manifest table; the rows staged,
        or None when there is no warehouse to stage in."""
        ...

    def build(self, logger: Logger) -> None:
        """dbt build (models and tests), then dbt source freshness; a failure raises."""
        ...

    def data_quality(self, months: Sequence[str]) -> list[dict[str, object]]:
        """rpt_data_quality's rows for these report months, from what build() built."""
        ...

    def publish(self) -> None:
        """Make what stage() and build() built the relations users read."""
        ...


class NoWarehouse:
    """CRIME_WAREHOUSE=none: the lake is loaded and nothing else is built."""

    name = "none"

    def stage(self, lake: Lake, spec: DatasetSpec, manifest: Sequence[ManifestEntry]) -> int | None:
        return None

    def build(self, logger: Logger) -> None:
        return None

    def data_quality(self, months: Sequence[str]) -> list[dict[str, object]]:
        return []

    def publish(self) -> None:
        return None


# which lakes each warehouse can read, and what to tell a user who pairs it with another
_READS: dict[str, tuple[LakeKind, ...]] = {
    "duckdb": ("local",),
    "bigquery": ("gcs",),
    "none": ("local", "gcs"),
}
_WRONG_LAKE = {
    "duckdb": "CRIME_LAKE_URL={url!r} is on GCS, which the DuckDB warehouse cannot read "
    "offline: set CRIME_WAREHOUSE=bigquery (or none for the lake only).",
    "bigquery": "CRIME_WAREHOUSE=bigquery reads the lake from GCS, but CRIME_LAKE_URL={url!r} "
    "is local: set CRIME_LAKE_URL=gs://BUCKET/PREFIX (terraform output lake_url).",
}


def check_backends(settings: Settings) -> None:
    """Refuse, in one sentence, a lake the configured warehouse cannot read."""
    kind = lake_kind(settings.lake_url)
    if kind not in _READS[settings.warehouse]:
        raise ConfigError(_WRONG_LAKE[settings.warehouse].format(url=settings.lake_url))
    if kind == "gcs":
        parse_gcs_url(settings.lake_url)  # a malformed bucket fails here, before any run


def open_warehouse(settings: Settings) -> Warehouse:
    """The warehouse named by CRIME_WAREHOUSE."""
    check_backends(settings)
    if settings.warehouse == "bigquery":
        from flows.warehouse.bigquery import BigQueryWarehouse  # google clients load when used

        return BigQueryWarehouse(settings)
    if settings.warehouse == "duckdb":
        from flows.warehouse.duckdb import DuckDbWarehouse

        return DuckDbWarehouse(settings)
    return NoWarehouse()
