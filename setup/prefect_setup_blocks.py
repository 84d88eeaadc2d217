"""Create or update the Prefect blocks the Google Cloud setup uses, without changing what is right.

    python setup/prefect_setup_blocks.py [--key creds/key.json] [--bucket NAME] [--dry-run]

Block names come from `flows.settings.load_settings()`, so this script and the flow read the same
names. The credentials block stores the PATH of the service-account key, not its contents: the key
stays in creds/ (ignored by git) and is never copied into the Prefect database. Nothing here prints
key material or the Socrata token: only block names, the key file path and the client_email.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from flows.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS_TYPE = "gcp-credentials"
BUCKET_TYPE = "gcs-bucket"
SECRET_TYPE = "secret"  # noqa: S105 (a block type slug)
# gcs: 3-63 characters, lowercase letters, digits, dashes, underscores and dots
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
REQUIRED_KEY_FIELDS = ("client_email", "private_key", "private_key_id", "project_id", "token_uri")

Status = Literal["created", "updated", "unchanged"]


class SetupError(Exception):
    """A problem the user can fix; the message is one sentence and never holds a secret."""


@dataclass(frozen=True)
class ServiceAccountKey:
    """What the script needs to know about a key file: where it is and whose it is."""

    path: Path
    client_email: str
    project_id: str


@dataclass(frozen=True)
class BlockPlan:
    """One block: its type slug and name, the values it must hold, and a description to print."""

    slug: str
    name: str
    values: Mapping[str, Any]
    summary: str


def read_key(path: Path) -> ServiceAccountKey:
    """Check that `path` holds a usable service-account key; errors never quote its contents."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise SetupError(
            f"key file {path} is not readable JSON: create it again with "
            "`terraform -chdir=terraform output -raw key_create_command`."
        ) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise SetupError(
            f"key file {path} is not a service-account key (its type must be service_account): "
            "download a JSON key for the pipeline's service account."
        )
    missing = [name for name in REQUIRED_KEY_FIELDS if not isinstance(info.get(name), str)]
    if missing:
        raise SetupError(
            f"key file {path} lacks {', '.join(missing)}: download a fresh JSON key for the "
            "pipeline's service account."
        )
    from google.oauth2 import service_account

    try:
        # google-auth leaves this classmethod unannotated
        service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        # the library's message may describe the key; say only that it is unusable
        raise SetupError(
            f"key file {path} holds a private key that cannot be loaded: download a fresh JSON key."
        ) from None
    return ServiceAccountKey(
        path=path, client_email=info["client_email"], project_id=info["project_id"]
    )


def resolve_key(
    settings: Settings, key_arg: str | None, env: Mapping[str, str]
) -> ServiceAccountKey | None:
    """The key file to use, or None for application default credentials.

    A missing file is an error only when the user named it (--key or CRIME_GCP_KEYFILE); the
    default creds/key.json being absent means "use application default credentials".
    """
    explicit = key_arg is not None or bool(env.get("CRIME_GCP_KEYFILE"))
    path = Path(key_arg if key_arg is not None else settings.gcp_keyfile).expanduser()
    # absolute, so the flow finds the key whatever directory it runs from
    path = path if path.is_absolute() else (Path.cwd() / path).resolve()
    if not path.is_file():
        if explicit:
            raise SetupError(
                f"key file {path} does not exist: create it with "
                "`terraform -chdir=terraform output -raw key_create_command`, "
                "or leave out --key and CRIME_GCP_KEYFILE to use application default credentials."
            )
        return None
    return read_key(path)


def bucket_folder(prefix: str) -> str:
    """A folder as GcsBucket stores it: no leading slash, one trailing slash, or empty."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def parse_lake_url(lake_url: str) -> tuple[str, str] | None:
    """gs://bucket/prefix as (bucket, folder); None for a local lake."""
    if not lake_url.startswith("gs://"):
        return None
    bucket, _, prefix = lake_url.removeprefix("gs://").partition("/")
    return bucket, bucket_folder(prefix)


def resolve_bucket(settings: Settings, bucket_arg: str | None) -> tuple[str, str]:
    """The lake bucket and folder: from --bucket, or from CRIME_LAKE_URL=gs://bucket/prefix."""
    from_lake = parse_lake_url(settings.lake_url)
    if bucket_arg:
        name = bucket_arg.strip().removeprefix("gs://").rstrip("/")
        if "/" in name:
            raise SetupError(
                f"--bucket {bucket_arg} has a folder in it: pass the bucket name only "
                "and set the folder through CRIME_LAKE_URL=gs://BUCKET/FOLDER."
            )
        if from_lake and from_lake[0] != name:
            raise SetupError(
                f"--bucket {name} disagrees with CRIME_LAKE_URL={settings.lake_url}: the flow "
                f"writes to {from_lake[0]}, so make them name the same bucket."
            )
        folder = from_lake[1] if from_lake else ""
    elif from_lake:
        name, folder = from_lake
    else:
        raise SetupError(
            "no lake bucket: set CRIME_LAKE_URL=gs://BUCKET/lake "
            "(`terraform -chdir=terraform output -raw lake_url`) or pass --bucket NAME."
        )
    if not BUCKET_NAME.match(name):
        raise SetupError(
            f"{name!r} is not a valid bucket name: use 3-63 lowercase letters, digits, "
            "dashes, dots or underscores."
        )
    return name, folder


def desired_credentials(settings: Settings, key: ServiceAccountKey | None) -> dict[str, Any]:
    """GcpCredentials values: the key's path, or neither path nor info for default credentials.

    The project is left out when nothing names it (default credentials and no CRIME_GCP_PROJECT):
    the block then takes it from the environment, and a difference there is not a change.
    """
    values: dict[str, Any] = {
        "service_account_file": str(key.path) if key else None,
        "service_account_info": None,
    }
    project = settings.gcp_project or (key.project_id if key else None)
    if project:
        values["project"] = project
    return values


def desired_bucket(bucket: str, folder: str, credentials_block: str) -> dict[str, Any]:
    """GcsBucket values; gcp_credentials is a reference to the credentials block, by name."""
    return {"bucket": bucket, "bucket_folder": folder, "gcp_credentials": credentials_block}


def plan_blocks(
    settings: Settings, key: ServiceAccountKey | None, bucket: str, folder: str
) -> list[BlockPlan]:
    """Every block this script manages, with the values it must end up holding."""
    if key:
        source = f"key file {key.path}, service account {key.client_email}"
    else:
        source = "application default credentials (no key file)"
    plans = [
        BlockPlan(
            CREDENTIALS_TYPE,
            settings.gcp_credentials_block,
            desired_credentials(settings, key),
            source,
        ),
        BlockPlan(
            BUCKET_TYPE,
            settings.gcs_bucket_block,
            desired_bucket(bucket, folder, settings.gcp_credentials_block),
            f"gs://{bucket}/{folder}",
        ),
    ]
    if settings.app_token:
        plans.append(
            BlockPlan(
                SECRET_TYPE,
                settings.socrata_token_block,
                {"value": settings.app_token},
                "from SOCRATA_APP_TOKEN",
            )
        )
    return plans


def change_for(desired: Mapping[str, Any], existing: Mapping[str, Any] | None) -> Status:
    """What saving `desired` would do to a block holding `existing` (None: no such block)."""
    if existing is None:
        return "created"
    if all(existing.get(field) == value for field, value in desired.items()):
        return "unchanged"
    return "updated"


def read_existing(client: SyncPrefectClient, slug: str, name: str) -> dict[str, Any] | None:
    """A saved block's raw values, nested block references replaced by the name they point to.

    Read as data, not loaded as a block: loading runs the block's own checks (a key file that has
    moved, credentials that no longer resolve), and a stale block must be updatable.
    """
    from prefect.exceptions import ObjectNotFound

    try:
        document = client.read_block_document_by_name(
            name=name, block_type_slug=slug, include_secrets=True
        )
    except ObjectNotFound:
        return None
    values = dict(document.data)
    for field, reference in document.block_document_references.items():
        values[field] = reference.get("block_document", {}).get("name")
    return values


def save_block(plan: BlockPlan) -> None:
    """Build the block from the plan and save it over any block of the same name."""
    from prefect.blocks.system import Secret
    from prefect_gcp import GcpCredentials
    from prefect_gcp.cloud_storage import GcsBucket

    values = plan.values
    if plan.slug == CREDENTIALS_TYPE:
        GcpCredentials(
            service_account_file=values["service_account_file"], project=values.get("project")
        ).save(plan.name, overwrite=True)
    elif plan.slug == BUCKET_TYPE:
        # a loaded block carries its document id, so the bucket saves a reference, not a copy
        credentials = GcpCredentials.load(values["gcp_credentials"])
        GcsBucket(
            bucket=values["bucket"],
            bucket_folder=values["bucket_folder"],
            gcp_credentials=credentials,
        ).save(plan.name, overwrite=True)
    elif plan.slug == SECRET_TYPE:
        Secret(value=values["value"]).save(plan.name, overwrite=True)
    else:
        raise ValueError(f"unknown block type {plan.slug}")


def check_default_credentials() -> None:
    """Without a key the block resolves application default credentials: they must exist."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise SetupError(
            "no key file and no application default credentials: create creds/key.json "
            "(docs/google-cloud.md) or run `gcloud auth application-default login`."
        ) from None


def apply_plans(
    plans: Sequence[BlockPlan],
    read: Callable[[str, str], Mapping[str, Any] | None],
    save: Callable[[BlockPlan], None],
    dry_run: bool,
) -> list[tuple[BlockPlan, Status]]:
    """Save each block whose values differ, in order (credentials before the bucket using them)."""
    results = []
    for plan in plans:
        status = change_for(plan.values, read(plan.slug, plan.name))
        if status != "unchanged" and not dry_run:
            save(plan)
        results.append((plan, status))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python setup/prefect_setup_blocks.py",
        description="Create or update the Prefect blocks for the Google Cloud setup (idempotent).",
    )
    parser.add_argument(
        "--key",
        help="service-account JSON key (default CRIME_GCP_KEYFILE or creds/key.json; "
        "without one, application default credentials)",
    )
    parser.add_argument(
        "--bucket", help="lake bucket name (default: the bucket in CRIME_LAKE_URL=gs://...)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change and save nothing"
    )
    return parser


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from flows.settings import load_settings

    settings = load_settings(env)
    key = resolve_key(settings, args.key, env)
    bucket, folder = resolve_bucket(settings, args.bucket)
    if key is None:
        check_default_credentials()
    plans = plan_blocks(settings, key, bucket, folder)

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value() or "ephemeral (local database)"
    print(f"prefect api: {api}")
    try:
        with get_client(sync_client=True) as client:
            results = apply_plans(
                plans,
                read=lambda slug, name: read_existing(client, slug, name),
                save=save_block,
                dry_run=args.dry_run,
            )
    except httpx.TransportError:
        raise SetupError(
            f"cannot reach the Prefect API at {api}: start it with `prefect server start` "
            "or unset PREFECT_API_URL to use the local database."
        ) from None
    for plan, status in results:
        shown = f"would be {status} (dry run)" if args.dry_run and status != "unchanged" else status
        print(f"{plan.slug}/{plan.name}: {shown} ({plan.summary})")
    if not settings.app_token:
        name = f"{SECRET_TYPE}/{settings.socrata_token_block}"
        print(f"{name}: skipped (SOCRATA_APP_TOKEN is not set)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # run as a file, the script's folder is on sys.path instead of the project root
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    args = build_parser().parse_args(argv)

    from flows.errors import ConfigError

    try:
        return run(args, os.environ)
    except (SetupError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
