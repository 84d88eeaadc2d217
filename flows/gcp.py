"""Google Cloud credentials, in one place for the GCS lake, BigQuery and dbt.

The Prefect blocks `setup/prefect_setup_blocks.py` saves are the ones read here: the GcsBucket
block (bucket, folder and its credentials) for the lake when it is saved, the GcpCredentials
block otherwise, and application default credentials when neither is saved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from google.auth.exceptions import DefaultCredentialsError

from flows.blocks import load_block
from flows.errors import ConfigError
from flows.settings import Settings

if TYPE_CHECKING:
    import google.cloud.storage as storage
    from google.cloud import bigquery
    from prefect_gcp import GcpCredentials

log = logging.getLogger(__name__)


def load_gcp_credentials(block_name: str) -> GcpCredentials:
    """The named GcpCredentials block if it is saved, else application default credentials."""
    # imported here: prefect-gcp takes seconds to import and only the Google backends need it
    from prefect_gcp import GcpCredentials

    credentials = load_block(GcpCredentials, block_name)
    if credentials is not None:
        log.info("Google Cloud: using the GcpCredentials block %r", block_name)
        return credentials
    log.info(
        "Google Cloud: no GcpCredentials block %r; using application default credentials",
        block_name,
    )
    try:
        return GcpCredentials()
    except DefaultCredentialsError:
        raise ConfigError(
            f"No Google Cloud credentials were found: save the GcpCredentials block "
            f"{block_name!r} (the setup script does), or set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service account key file."
        ) from None


def lake_storage_client(settings: Settings, bucket: str, prefix: str) -> storage.Client:
    """The storage client for the lake at gs://bucket/prefix.

    A saved GcsBucket block must name the same bucket and folder as CRIME_LAKE_URL (the setup
    script derives it from there); its credentials are then the lake's.
    """
    from prefect_gcp.cloud_storage import GcsBucket

    block = load_block(GcsBucket, settings.gcs_bucket_block)
    if block is None:
        credentials = load_gcp_credentials(settings.gcp_credentials_block)
    else:
        saved = f"gs://{block.bucket}/{(block.bucket_folder or '').strip('/')}".rstrip("/")
        wanted = f"gs://{bucket}/{prefix}".rstrip("/")
        if saved != wanted:
            raise ConfigError(
                f"The GcsBucket block {settings.gcs_bucket_block!r} points at {saved}, but "
                f"CRIME_LAKE_URL is {wanted}: run setup/prefect_setup_blocks.py again, or set "
                "CRIME_LAKE_URL to the block's location."
            )
        log.info("GCS lake: using the GcsBucket block %r", settings.gcs_bucket_block)
        credentials = block.gcp_credentials
    client: storage.Client = credentials.get_cloud_storage_client(project=settings.gcp_project)
    return client


def bigquery_client(settings: Settings) -> bigquery.Client:
    """A BigQuery client built the production way: the GcpCredentials block, else ADC."""
    credentials = load_gcp_credentials(settings.gcp_credentials_block)
    try:
        client: bigquery.Client = credentials.get_bigquery_client(
            project=settings.gcp_project, location=settings.bq_location
        )
    except OSError:
        # google.cloud's "Project was not passed and could not be determined from the environment"
        raise ConfigError(
            "No Google Cloud project is known for BigQuery: set CRIME_GCP_PROJECT to the "
            "project's ID (or save it in the GcpCredentials block)."
        ) from None
    return client


def service_account_keyfile(settings: Settings) -> Path | None:
    """The key file dbt should use (the one the credentials block points at), or None for ADC."""
    keyfile = Path(settings.gcp_keyfile).expanduser().resolve()
    return keyfile if keyfile.is_file() else None
