"""The BigQuery warehouse's staging relation over the lake on GCS, rebuilt before each dbt run.

    <project>.<staging_dataset>.spd_crime           external table over the lake's month objects
    <project>.<staging_dataset>.spd_crime_manifest  the lake's manifest, one row per month

The external table reads the lake's Parquet where it lies, with the hive partition column
report_month taken from the object names, so nothing is copied and the table is always exactly
the lake. The manifest is small and loaded whole on every run. Both live in the staging
dataset, which Terraform creates in the configured location; this module never creates it.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from google.api_core import exceptions as api_errors
from google.cloud import bigquery

from flows.errors import ConfigError, PipelineError
from flows.gcp import bigquery_client, service_account_keyfile
from flows.lake.layout import DATA_FILE, lake_kind
from flows.lake.manifest import ManifestEntry, manifest_table
from flows.settings import Settings
from flows.sources.specs import DatasetSpec
from flows.warehouse.dbt import Logger, run_dbt_build

if TYPE_CHECKING:
    from flows.lake import Lake

log = logging.getLogger(__name__)

# the columns of flows.lake.manifest.manifest_table, as BigQuery types
MANIFEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("report_month", "STRING"),
    ("row_count", "INT64"),
    ("fetched_at", "STRING"),
    ("source_updated_at", "STRING"),
)
JOB_PREFIX = "crime_staging_"
# a project id, optionally domain-scoped (example.com:project); nothing that could leave the quotes
_PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]*[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# the lake root inside a quoted literal: no quote, backslash or wildcard of its own
_UNSAFE_URL_CHARS = re.compile(r"['\"\\*?\[\]\s]")
_TERRAFORM = "create it with `terraform apply` in terraform/"
_MONTH_RE = re.compile(r"^(?:\d{4}-\d{2}|unknown)$")
# BigQuery's limit on the source URIs one external table definition lists (its quotas page)
MAX_SOURCE_URIS = 10_000


def external_table_ddl(
    project: str,
    dataset: str,
    spec: DatasetSpec,
    lake_root_gs_url: str,
    uris: Sequence[str] | None = None,
) -> str:
    """`CREATE OR REPLACE EXTERNAL TABLE` over exactly the lake's month objects.

    lake_root_gs_url is the dataset's folder in the lake (GcsLake.root, such as
    gs://bucket/lake/spd_crime); uris are its month objects (GcsLake.month_files()), each
    <root>/report_month=<month>/data.parquet, listed one by one with no wildcard, so an object
    that is no month file (a copy, a backup folder) is never read. The partition prefix ends
    right before the report_month=... key. BigQuery takes at most MAX_SOURCE_URIS of them.
    """
    _check_identifiers(project, dataset)
    root = _check_lake_root(lake_root_gs_url)
    if uris is None:
        raise ValueError(f"the external table lists the lake's month objects: name those in {root}")
    checked = [_check_month_uri(spec, root, uri) for uri in uris]
    if not checked:
        raise _nothing_to_stage(root)
    if len(checked) > MAX_SOURCE_URIS:
        raise PipelineError(
            f"The lake at {root} holds {len(checked)} month files, more than the "
            f"{MAX_SOURCE_URIS} source URIs a BigQuery external table may list: split the "
            "dataset across lakes, or stage it with a wildcard over a folder that holds month "
            "files only."
        )
    listed = ",\n".join(f"        '{uri}'" for uri in checked)
    return (
        f"CREATE OR REPLACE EXTERNAL TABLE `{project}.{dataset}.{spec.name}`\n"
        f"WITH PARTITION COLUMNS ({spec.partition_column} STRING)\n"
        "OPTIONS (\n"
        "    format = 'PARQUET',\n"
        f"    uris = [\n{listed}\n    ],\n"
        f"    hive_partition_uri_prefix = '{root}',\n"
        "    require_hive_partition_filter = false\n"
        ")"
    )


def month_uris(spec: DatasetSpec, lake_root_gs_url: str, months: Sequence[str]) -> list[str]:
    """The month objects' URLs under a lake root, as GcsLake.url_of names them."""
    root = lake_root_gs_url.rstrip("/")
    return [f"{root}/{spec.partition_column}={month}/{DATA_FILE}" for month in sorted(months)]


def _nothing_to_stage(root: str) -> PipelineError:
    return PipelineError(
        f"The lake at {root} holds no month files yet, so there is nothing for "
        "BigQuery to stage: load at least one month first."
    )


def _check_month_uri(spec: DatasetSpec, root: str, uri: str) -> str:
    prefix = f"{root}/{spec.partition_column}="
    month, _, name = uri[len(prefix) :].partition("/")
    if not uri.startswith(prefix) or name != DATA_FILE or not _MONTH_RE.match(month):
        raise ValueError(f"{uri!r} is not a month object of the lake at {root}")
    return uri


def rebuild_bigquery_staging(
    client: bigquery.Client,
    settings: Settings,
    spec: DatasetSpec,
    lake_root: str,
    manifest_entries: Sequence[ManifestEntry],
    has_files: bool = True,
    uris: Sequence[str] | None = None,
) -> int:
    """Replace the external staging table and the manifest table; return the rows staged.

    uris are the month objects to stage (the warehouse passes the lake's own, from
    GcsLake.month_files()); without them, the objects of the months the manifest records.
    Every job runs in settings.bq_location, the location of the staging dataset.
    """
    project = _project(client, settings)
    dataset = settings.staging_dataset
    _check_identifiers(project, dataset)
    root = _check_lake_root(lake_root)
    if not has_files:
        raise _nothing_to_stage(root)
    if uris is None:
        uris = month_uris(spec, root, [entry.month for entry in manifest_entries])
    for uri in uris:
        _check_month_uri(spec, root, uri)
    location = settings.bq_location
    staging = f"{project}.{dataset}.{spec.name}"
    with bigquery_errors(project, dataset):
        _check_dataset(client, project, dataset, location)
        ddl = external_table_ddl(project, dataset, spec, root, uris)
        client.query(ddl, location=location, job_id_prefix=JOB_PREFIX).result()
        log.info("BigQuery: %s now reads %d month file(s) in %s", staging, len(uris), lake_root)
        manifest_rows = load_manifest(client, f"{staging}_manifest", manifest_entries, location)
        log.info("BigQuery: %s_manifest holds %d month(s)", staging, manifest_rows)
        result = client.query(
            f"select count(*) as row_count from `{staging}`",
            location=location,
            job_id_prefix=JOB_PREFIX,
        ).result()
    row = next(iter(result), None)
    return int(row[0]) if row is not None else 0


def load_manifest(
    client: bigquery.Client,
    table_id: str,
    entries: Sequence[ManifestEntry],
    location: str,
) -> int:
    """Replace the manifest table with these entries in one load job (WRITE_TRUNCATE)."""
    sink = io.BytesIO()
    pq.write_table(manifest_table(list(entries)), sink)
    sink.seek(0)
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        # the schema is given, not detected: an empty manifest keeps its types too
        schema=[bigquery.SchemaField(name, kind) for name, kind in MANIFEST_COLUMNS],
    )
    job = client.load_table_from_file(
        sink, table_id, job_config=config, location=location, job_id_prefix=JOB_PREFIX
    )
    job.result()
    return int(job.output_rows or 0)


@contextmanager
def bigquery_errors(project: str, dataset: str) -> Iterator[None]:
    """Turn the BigQuery errors a user can act on into one-sentence PipelineErrors."""
    try:
        yield
    except api_errors.Forbidden as exc:
        reasons = _reasons(exc)
        if "billingNotEnabled" in reasons:
            raise PipelineError(
                f"Billing is not enabled on Google Cloud project {project!r}, so BigQuery will "
                "not run jobs there: enable billing for it in the console, or set "
                "CRIME_GCP_PROJECT to a project with billing."
            ) from None
        if reasons & {"rateLimitExceeded", "quotaExceeded"}:
            raise
        # the response text can name the service account; the message keeps to the resources
        raise PipelineError(
            f"The GCP credentials may not create tables or run jobs in BigQuery dataset "
            f"{project}.{dataset}: grant them roles/bigquery.dataEditor on it and "
            f"roles/bigquery.jobUser on project {project} (`terraform apply` does), or use "
            "the credentials block that has them."
        ) from None
    except api_errors.NotFound as exc:
        if "Not found: Project" in exc.message:
            raise PipelineError(
                f"Google Cloud project {project!r} does not exist or is not visible to these "
                "credentials: set CRIME_GCP_PROJECT to the project's ID (not its name or "
                "number)."
            ) from None
        if "Not found: Dataset" in exc.message:
            raise _missing_dataset(project, dataset) from None
        raise
    except api_errors.BadRequest as exc:
        if "Invalid project ID" in exc.message:
            raise ConfigError(
                f"{project!r} is not a valid Google Cloud project ID: set CRIME_GCP_PROJECT "
                "to the project's ID, lowercase letters, digits and hyphens."
            ) from None
        raise


def _project(client: bigquery.Client, settings: Settings) -> str:
    project = settings.gcp_project or client.project
    if not project:
        raise ConfigError(
            "No Google Cloud project is known for BigQuery: set CRIME_GCP_PROJECT to the "
            "project's ID."
        )
    return str(project)


def _check_dataset(client: bigquery.Client, project: str, dataset: str, location: str) -> None:
    try:
        found = client.get_dataset(f"{project}.{dataset}")
    except api_errors.NotFound as exc:
        if "Not found: Project" in exc.message:
            raise
        raise _missing_dataset(project, dataset) from None
    if found.location and found.location.lower() != location.lower():
        # a job in another location cannot see the dataset at all: say where it is instead
        raise ConfigError(
            f"The BigQuery dataset {project}.{dataset} is in location {found.location}, not "
            f"in CRIME_BQ_LOCATION={location}: set CRIME_BQ_LOCATION={found.location}."
        )


def _missing_dataset(project: str, dataset: str) -> PipelineError:
    return PipelineError(
        f"The BigQuery dataset {project}.{dataset} does not exist: {_TERRAFORM}, or set "
        "CRIME_STAGING_DATASET to an existing dataset."
    )


def _reasons(exc: api_errors.GoogleAPICallError) -> set[str]:
    return {str(error.get("reason", "")) for error in exc.errors if isinstance(error, dict)}


def _check_identifiers(project: str, dataset: str) -> None:
    if not _PROJECT_RE.match(project):
        raise ConfigError(
            f"CRIME_GCP_PROJECT={project!r} is not a Google Cloud project ID: use the "
            "project's ID, lowercase letters, digits and hyphens, as in my-crime-project."
        )
    if not _DATASET_RE.match(dataset):
        raise ConfigError(
            f"CRIME_STAGING_DATASET={dataset!r} is not a BigQuery dataset name: use letters, "
            "digits and underscores only, as in crime_staging."
        )


def _check_lake_root(url: str) -> str:
    root = url.rstrip("/")
    if lake_kind(root) != "gcs":
        raise ConfigError(
            f"CRIME_LAKE_URL={url!r} is not on GCS, and BigQuery reads the lake from there: "
            "set CRIME_LAKE_URL=gs://BUCKET/PREFIX for CRIME_WAREHOUSE=bigquery."
        )
    if _UNSAFE_URL_CHARS.search(root) or root.count("/") < 3:
        raise ConfigError(
            f"The lake location {url!r} cannot name an external table's files: use "
            "gs://BUCKET/PREFIX with no quotes, spaces or wildcards."
        )
    return root


class BigQueryWarehouse:
    """CRIME_WAREHOUSE=bigquery: an external table over the GCS lake, dbt through dbt-bigquery."""

    name = "bigquery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def stage(self, lake: Lake, spec: DatasetSpec, manifest: Sequence[ManifestEntry]) -> int:
        client = bigquery_client(self.settings)
        try:
            files = lake.month_files()
            return rebuild_bigquery_staging(
                client,
                self.settings,
                spec,
                lake.root,
                manifest,
                has_files=bool(files),
                uris=[files[month] for month in sorted(files)],
            )
        finally:
            client.close()  # type: ignore[no-untyped-call]  # unannotated in google-cloud-bigquery

    def build(self, logger: Logger) -> None:
        env: dict[str, str] = {}
        keyfile = service_account_keyfile(self.settings)
        if keyfile is not None:
            # dbt reads the same key file the credentials block points at; without one, ADC
            env["CRIME_GCP_KEYFILE"] = str(keyfile)
            # a method the user set for dbt wins over the derived one
            env["CRIME_BQ_AUTH_METHOD"] = os.environ.get("CRIME_BQ_AUTH_METHOD", "service-account")
        run_dbt_build(
            self.settings,
            env,
            logger,
            kept="the marts dataset may hold models rebuilt before the failure (BigQuery has no "
            "swap here yet), while the lake keeps the months this run loaded",
        )

    def publish(self) -> None:
        return None

    def data_quality(self, months: Sequence[str]) -> list[dict[str, object]]:
        if not months:
            return []
        client = bigquery_client(self.settings)
        try:
            project = _project(client, self.settings)
            _check_identifiers(project, self.settings.staging_dataset)
            if not _DATASET_RE.match(self.settings.bq_dataset):
                raise ConfigError(
                    f"CRIME_BQ_DATASET={self.settings.bq_dataset!r} is not a BigQuery dataset "
                    "name: use letters, digits and underscores only, as in crime_marts."
                )
            config = bigquery.QueryJobConfig(
                query_parameters=[bigquery.ArrayQueryParameter("months", "STRING", list(months))]
            )
            rows = client.query(
                f"select * from `{project}.{self.settings.bq_dataset}.rpt_data_quality` "
                "where report_month in unnest(@months) order by report_month",
                job_config=config,
                location=self.settings.bq_location,
                job_id_prefix=JOB_PREFIX,
            ).result()
            return [dict(row.items()) for row in rows]
        finally:
            client.close()  # type: ignore[no-untyped-call]  # unannotated in google-cloud-bigquery
