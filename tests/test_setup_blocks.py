"""setup/prefect_setup_blocks.py against a real Prefect API, with a fake but real-shaped key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flows.settings import load_settings
from setup.prefect_setup_blocks import (
    ServiceAccountKey,
    change_for,
    desired_credentials,
    parse_lake_url,
    resolve_bucket,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "setup" / "prefect_setup_blocks.py"
TOKEN = "fake-socrata-token-c0ffee"
# never inherited by the script: a developer's real key, project or gcloud login must not leak in
ISOLATED_PREFIXES = ("CRIME_", "SOCRATA_", "GOOGLE_", "CLOUDSDK_", "GCE_")


@pytest.fixture(scope="module")
def fake_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A service-account key shaped like Google's, with a real RSA key that is no one's."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": "seattle-crime-pipeline@fake-project.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("creds") / "key.json"
    path.write_text(json.dumps(info))
    return path, pem


@pytest.fixture
def block_names() -> dict[str, str]:
    """Names of this test's own blocks, set through the same variables the flow reads."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "CRIME_GCP_CREDENTIALS_BLOCK": f"test-gcp-{suffix}",
        "CRIME_GCS_BUCKET_BLOCK": f"test-lake-{suffix}",
        "CRIME_SOCRATA_TOKEN_BLOCK": f"test-token-{suffix}",
    }


def run_setup(
    args: list[str], env: dict[str, str], cwd: Path, api_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_PREFIXES)}
    # no gcloud login and no metadata server: application default credentials are what we give
    full_env["CLOUDSDK_CONFIG"] = str(cwd / "no-gcloud")
    full_env["NO_GCE_CHECK"] = "True"
    full_env.update(env)
    if api_url:
        full_env["PREFECT_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def statuses(stdout: str) -> dict[str, str]:
    """`slug/name: status (detail)` lines as {slug/name: status}."""
    found = {}
    for line in stdout.splitlines():
        if ": " in line and not line.startswith("prefect api"):
            block, _, rest = line.partition(": ")
            found[block] = rest.split(" (")[0]
    return found


def raw_block(slug: str, name: str) -> dict[str, object] | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                name=name, block_type_slug=slug, include_secrets=True
            )
        except ObjectNotFound:
            return None
    return dict(document.data)


def assert_no_secrets(result: subprocess.CompletedProcess[str], pem: str) -> None:
    output = result.stdout + result.stderr
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert not any(line in output for line in body), "private key text was printed"
    assert "PRIVATE KEY" not in output
    assert TOKEN not in output


@pytest.mark.slow
def test_creates_three_blocks_then_changes_nothing(
    prefect_api_url: str, fake_key: tuple[Path, str], block_names: dict[str, str], tmp_path: Path
) -> None:
    key_path, pem = fake_key
    env = {
        **block_names,
        "CRIME_WAREHOUSE": "bigquery",
        "CRIME_LAKE_URL": "gs://test-crime-lake/lake",
        "SOCRATA_APP_TOKEN": TOKEN,
    }
    cred = f"gcp-credentials/{block_names['CRIME_GCP_CREDENTIALS_BLOCK']}"
    lake = f"gcs-bucket/{block_names['CRIME_GCS_BUCKET_BLOCK']}"
    token = f"secret/{block_names['CRIME_SOCRATA_TOKEN_BLOCK']}"

    first = run_setup(["--key", str(key_path)], env, tmp_path, prefect_api_url)
    assert first.returncode == 0, first.stderr
    assert statuses(first.stdout) == {cred: "created", lake: "created", token: "created"}
    assert "seattle-crime-pipeline@fake-project.iam.gserviceaccount.com" in first.stdout
    assert str(key_path) in first.stdout

    second = run_setup(["--key", str(key_path)], env, tmp_path, prefect_api_url)
    assert second.returncode == 0, second.stderr
    assert statuses(second.stdout) == {cred: "unchanged", lake: "unchanged", token: "unchanged"}
    for result in (first, second):
        assert_no_secrets(result, pem)

    from prefect.blocks.system import Secret
    from prefect_gcp import GcpCredentials
    from prefect_gcp.cloud_storage import GcsBucket

    bucket = GcsBucket.load(block_names["CRIME_GCS_BUCKET_BLOCK"])
    assert bucket.bucket == "test-crime-lake"
    assert bucket.bucket_folder == "lake/"
    assert bucket.gcp_credentials._block_document_name == block_names["CRIME_GCP_CREDENTIALS_BLOCK"]
    credentials = GcpCredentials.load(block_names["CRIME_GCP_CREDENTIALS_BLOCK"])
    assert credentials.service_account_file == key_path
    assert credentials.project == "fake-project"
    secret = Secret.load(block_names["CRIME_SOCRATA_TOKEN_BLOCK"])
    assert isinstance(secret, Secret)
    assert secret.get() == TOKEN
    # the design choice: the database holds the key's path, never its contents
    stored = raw_block("gcp-credentials", block_names["CRIME_GCP_CREDENTIALS_BLOCK"])
    assert stored is not None
    assert stored["service_account_info"] is None
    assert pem not in json.dumps(stored)


@pytest.mark.slow
def test_dry_run_reports_a_change_and_saves_nothing_then_a_run_updates(
    prefect_api_url: str, fake_key: tuple[Path, str], block_names: dict[str, str], tmp_path: Path
) -> None:
    key_path, _ = fake_key
    env = {
        **block_names,
        "CRIME_WAREHOUSE": "bigquery",
        "CRIME_LAKE_URL": "gs://test-crime-lake/lake",
    }
    lake = f"gcs-bucket/{block_names['CRIME_GCS_BUCKET_BLOCK']}"
    assert run_setup(["--key", str(key_path)], env, tmp_path, prefect_api_url).returncode == 0

    env["CRIME_LAKE_URL"] = "gs://test-crime-lake/lake-v2/"
    dry = run_setup(["--key", str(key_path), "--dry-run"], env, tmp_path, prefect_api_url)
    assert dry.returncode == 0, dry.stderr
    assert statuses(dry.stdout)[lake] == "would be updated"
    unchanged = raw_block("gcs-bucket", block_names["CRIME_GCS_BUCKET_BLOCK"])
    assert unchanged is not None
    assert unchanged["bucket_folder"] == "lake/"

    real = run_setup(["--key", str(key_path)], env, tmp_path, prefect_api_url)
    assert real.returncode == 0, real.stderr
    found = statuses(real.stdout)
    assert found[lake] == "updated"
    assert found[f"gcp-credentials/{block_names['CRIME_GCP_CREDENTIALS_BLOCK']}"] == "unchanged"
    stored = raw_block("gcs-bucket", block_names["CRIME_GCS_BUCKET_BLOCK"])
    assert stored is not None
    assert stored["bucket_folder"] == "lake-v2/"


@pytest.mark.slow
def test_a_block_holding_the_key_contents_is_rewritten_to_hold_the_path(
    prefect_api_url: str, fake_key: tuple[Path, str], block_names: dict[str, str], tmp_path: Path
) -> None:
    from prefect_gcp import GcpCredentials

    key_path, pem = fake_key
    name = block_names["CRIME_GCP_CREDENTIALS_BLOCK"]
    GcpCredentials(service_account_info=json.loads(key_path.read_text())).save(name)

    env = {
        **block_names,
        "CRIME_WAREHOUSE": "bigquery",
        "CRIME_LAKE_URL": "gs://test-crime-lake/lake",
    }
    result = run_setup(["--key", str(key_path)], env, tmp_path, prefect_api_url)
    assert result.returncode == 0, result.stderr
    assert statuses(result.stdout)[f"gcp-credentials/{name}"] == "updated"
    stored = raw_block("gcp-credentials", name)
    assert stored is not None
    assert stored["service_account_info"] is None
    assert stored["service_account_file"] == str(key_path)
    assert pem not in json.dumps(stored)


@pytest.mark.slow
def test_without_a_key_uses_default_credentials_and_skips_the_token(
    prefect_api_url: str,
    block_names: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what `gcloud auth application-default login` leaves behind, with made-up values
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    (gcloud / "application_default_credentials.json").write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "fake.apps.googleusercontent.com",
                "client_secret": "fake-client-secret",
                "refresh_token": "fake-refresh-token",
                "quota_project_id": "adc-project",
            }
        )
    )
    env = {
        **block_names,
        "CRIME_WAREHOUSE": "bigquery",
        "CRIME_LAKE_URL": "gs://test-crime-lake/lake",
        "CRIME_GCP_PROJECT": "adc-project",
        "CLOUDSDK_CONFIG": str(gcloud),
    }
    # cwd has no creds/key.json: the default key is absent, which means default credentials
    result = run_setup([], env, tmp_path, prefect_api_url)
    assert result.returncode == 0, result.stderr
    cred = f"gcp-credentials/{block_names['CRIME_GCP_CREDENTIALS_BLOCK']}"
    token = f"secret/{block_names['CRIME_SOCRATA_TOKEN_BLOCK']}"
    assert statuses(result.stdout) == {
        cred: "created",
        f"gcs-bucket/{block_names['CRIME_GCS_BUCKET_BLOCK']}": "created",
        token: "skipped",
    }
    assert "application default credentials" in result.stdout
    assert "fake-refresh-token" not in result.stdout + result.stderr
    assert raw_block("secret", block_names["CRIME_SOCRATA_TOKEN_BLOCK"]) is None
    stored = raw_block("gcp-credentials", block_names["CRIME_GCP_CREDENTIALS_BLOCK"])
    assert stored == {
        "service_account_file": None,
        "service_account_info": None,
        "project": "adc-project",
    }

    again = run_setup([], env, tmp_path, prefect_api_url)
    assert again.returncode == 0, again.stderr
    assert statuses(again.stdout)[cred] == "unchanged"

    from prefect_gcp import GcpCredentials

    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    loaded = GcpCredentials.load(block_names["CRIME_GCP_CREDENTIALS_BLOCK"])
    assert loaded.service_account_file is None
    assert loaded.project == "adc-project"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-key", "does not exist"),
        ("not-json", "is not readable JSON"),
        ("not-service-account", "is not a service-account key"),
        ("broken-private-key", "holds a private key that cannot be loaded"),
        ("no-bucket", "reads the lake from GCS"),
        ("bucket-disagrees", "disagrees with CRIME_LAKE_URL"),
        ("no-credentials-at-all", "no key file and no application default credentials"),
    ],
)
def test_errors_are_one_sentence_and_exit_2(
    case: str, message: str, fake_key: tuple[Path, str], tmp_path: Path
) -> None:
    key_path, pem = fake_key
    info = json.loads(key_path.read_text())
    env = {"CRIME_WAREHOUSE": "bigquery", "CRIME_LAKE_URL": "gs://test-crime-lake/lake"}
    args = ["--key", str(key_path)]
    if case == "missing-key":
        args = ["--key", str(tmp_path / "creds" / "absent.json")]
    elif case == "not-json":
        args = ["--key", str(_write(tmp_path / "k.json", "{not json"))]
    elif case == "not-service-account":
        args = ["--key", str(_write(tmp_path / "k.json", json.dumps({"type": "authorized_user"})))]
    elif case == "broken-private-key":
        broken = {**info, "private_key": pem.replace(pem.splitlines()[3], "not-base64-SECRETISH")}
        args = ["--key", str(_write(tmp_path / "k.json", json.dumps(broken)))]
    elif case == "no-bucket":
        env["CRIME_LAKE_URL"] = str(tmp_path / "lake")
    elif case == "bucket-disagrees":
        args += ["--bucket", "another-bucket"]
    elif case == "no-credentials-at-all":
        args = []
    # no api url: every one of these fails before the script talks to Prefect
    result = run_setup(args, env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert result.stdout == ""
    assert "SECRETISH" not in result.stderr
    assert_no_secrets(result, pem)


def test_lake_url_gives_bucket_and_folder() -> None:
    assert parse_lake_url("gs://b/lake") == ("b", "lake/")
    assert parse_lake_url("gs://b/a/b/") == ("b", "a/b/")
    assert parse_lake_url("gs://b") == ("b", "")
    assert parse_lake_url("data/lake") is None
    settings = load_settings({"CRIME_WAREHOUSE": "bigquery", "CRIME_LAKE_URL": "gs://my-lake/lake"})
    assert resolve_bucket(settings, None) == ("my-lake", "lake/")
    assert resolve_bucket(settings, "gs://my-lake") == ("my-lake", "lake/")
    assert resolve_bucket(load_settings({}), "my-lake") == ("my-lake", "")


def test_desired_credentials_and_diff(tmp_path: Path) -> None:
    key = ServiceAccountKey(tmp_path / "key.json", "sa@p.iam.gserviceaccount.com", "key-project")
    from_key = desired_credentials(load_settings({}), key)
    assert from_key == {
        "service_account_file": str(tmp_path / "key.json"),
        "service_account_info": None,
        "project": "key-project",
    }
    named = desired_credentials(load_settings({"CRIME_GCP_PROJECT": "other"}), key)
    assert named["project"] == "other"
    # default credentials and no project named: the project the block finds is not a change
    adc = desired_credentials(load_settings({}), None)
    assert "project" not in adc
    assert change_for(adc, {**adc, "project": "whatever-adc-says"}) == "unchanged"
    assert change_for(from_key, None) == "created"
    assert change_for(from_key, dict(from_key)) == "unchanged"
    assert change_for(from_key, {**from_key, "service_account_file": "/old/key.json"}) == "updated"
