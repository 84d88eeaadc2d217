"""terraform/: formatted, parseable, and holding the facts that keep the lake and the keys safe.

`terraform init` needs the google provider from the internet, so `validate` and `plan` cannot run
offline; these tests read the files instead (python-hcl2) and check what matters.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import hcl2
except ImportError:  # pragma: no cover - reported by the fixture below
    hcl2 = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = ROOT / "terraform"
TF_FILES = sorted(p for p in TERRAFORM_DIR.rglob("*.tf") if ".terraform" not in p.parts)
# lifecycle conditions that can only match old versions, never the live object
NONCURRENT_ONLY = {"num_newer_versions", "days_since_noncurrent_time", "noncurrent_time_before"}
LAKE = "${google_storage_bucket.lake.name}"
SEED_RULE = """
resource "google_storage_bucket" "seed" {
  name     = "seed"
  location = "US"
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}
"""


def parse(text: str) -> dict[str, Any]:
    if hcl2 is None:
        pytest.fail(
            "python-hcl2 is not installed: pip install python-hcl2 (it is in requirements.in)"
        )
    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    return hcl2.loads(text, serialization_options=options)


@pytest.fixture(scope="module")
def config() -> dict[str, dict[str, Any]]:
    """Every .tf file merged: {"resource": {"type.name": body}, "variable": {...}, ...}."""
    merged: dict[str, dict[str, Any]] = {"resource": {}, "variable": {}, "output": {}}
    for path in TF_FILES:
        parsed = parse(path.read_text())
        for resource in parsed.get("resource", []):
            for rtype, named in resource.items():
                for name, body in named.items():
                    merged["resource"][f"{rtype}.{name}"] = body
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
        merged.setdefault("terraform", {}).update(
            {k: v for block in parsed.get("terraform", []) for k, v in block.items()}
        )
    return merged


def of_type(config: dict[str, dict[str, Any]], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in config["resource"].items() if k.startswith(f"{rtype}.")}


def lifecycle_rules(bucket: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Static lifecycle_rule blocks and the content of dynamic ones."""
    yield from bucket.get("lifecycle_rule", [])
    for dynamic in bucket.get("dynamic", []):
        yield from dynamic.get("lifecycle_rule", {}).get("content", [])


def live_deleting_rules(bucket: dict[str, Any]) -> list[dict[str, Any]]:
    """Delete rules that could match a live object: anything not limited to old versions."""
    bad = []
    for rule in lifecycle_rules(bucket):
        if not any(action.get("type") == "Delete" for action in rule.get("action", [])):
            continue
        for condition in rule.get("condition") or [{}]:
            state = condition.get("with_state")
            limits = set(condition) - {"with_state"}
            # an empty condition matches every object
            unlimited = not limits and state is None
            if state not in (None, "ARCHIVED") or not limits <= NONCURRENT_ONLY or unlimited:
                bad.append(rule)
    return bad


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform") or (
        "/usr/local/bin/terraform" if Path("/usr/local/bin/terraform").exists() else None
    )
    if terraform is None:
        pytest.fail(
            "terraform is not installed: install 1.5 or newer from "
            "https://developer.hashicorp.com/terraform/install (one binary on PATH)"
        )
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive terraform/`; unformatted: {result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("path", TF_FILES, ids=[p.name for p in TF_FILES])
def test_every_file_parses(path: Path) -> None:
    assert parse(path.read_text())


def test_files_exist() -> None:
    names = {p.name for p in TF_FILES}
    assert {"versions.tf", "main.tf", "variables.tf", "outputs.tf"} <= names
    assert (TERRAFORM_DIR / "terraform.tfvars.example").is_file()


def test_versions_pin_terraform_and_the_google_provider(config: dict[str, dict[str, Any]]) -> None:
    terraform = config["terraform"]
    assert terraform["required_version"] == ">= 1.5"
    google = terraform["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google"
    assert google["version"] == "~> 6.0"


def test_lake_bucket_is_private_versioned_and_keeps_live_data(
    config: dict[str, dict[str, Any]],
) -> None:
    buckets = of_type(config, "google_storage_bucket")
    assert list(buckets) == ["google_storage_bucket.lake"]
    lake = buckets["google_storage_bucket.lake"]
    assert lake["uniform_bucket_level_access"] is True
    assert lake["public_access_prevention"] == "enforced"
    assert lake["versioning"] == [{"enabled": True}]
    assert lake["location"] == "${var.location}"
    assert lake.get("force_destroy", False) is False
    for name, bucket in buckets.items():
        assert live_deleting_rules(bucket) == [], f"{name} deletes live lake data"
    assert list(lifecycle_rules(lake)), "the noncurrent-version cleanup rule is gone"


def test_the_seed_projects_30_day_rule_would_be_caught() -> None:
    seed = parse(SEED_RULE)["resource"][0]["google_storage_bucket"]["seed"]
    assert live_deleting_rules(seed) == seed["lifecycle_rule"]
    live_state = {"lifecycle_rule": [{**seed["lifecycle_rule"][0]}]}
    live_state["lifecycle_rule"][0]["condition"] = [{"num_newer_versions": 1, "with_state": "ANY"}]
    assert live_deleting_rules(live_state) != []


def test_datasets_share_the_bucket_location(config: dict[str, dict[str, Any]]) -> None:
    datasets = of_type(config, "google_bigquery_dataset")
    assert set(datasets) == {"google_bigquery_dataset.staging", "google_bigquery_dataset.marts"}
    for body in datasets.values():
        assert body["location"] == "${var.location}"
        assert body.get("delete_contents_on_destroy", False) is False
    assert datasets["google_bigquery_dataset.staging"]["dataset_id"] == "${var.staging_dataset}"
    assert datasets["google_bigquery_dataset.marts"]["dataset_id"] == "${var.marts_dataset}"
    assert config["variable"]["location"]["default"] == "US"
    assert config["variable"]["staging_dataset"]["default"] == "crime_staging"
    assert config["variable"]["marts_dataset"]["default"] == "crime_marts"


def test_iam_is_least_privilege(config: dict[str, dict[str, Any]]) -> None:
    member = "${local.pipeline_member}"
    bucket_grants = of_type(config, "google_storage_bucket_iam_member")
    assert [(g["bucket"], g["role"], g["member"]) for g in bucket_grants.values()] == [
        (LAKE, "roles/storage.objectAdmin", member)
    ]
    dataset_grants = of_type(config, "google_bigquery_dataset_iam_member")
    assert len(dataset_grants) == 1
    (grant,) = dataset_grants.values()
    assert grant["role"] == "roles/bigquery.dataEditor"
    assert grant["member"] == member
    assert grant["dataset_id"] == "${each.value}"
    assert set(grant["for_each"].values()) == {
        "${google_bigquery_dataset.staging.dataset_id}",
        "${google_bigquery_dataset.marts.dataset_id}",
    }
    # at project level only the right to run query jobs; no storage or data role there
    project_roles = [
        body["role"]
        for rtype in (
            "google_project_iam_member",
            "google_project_iam_binding",
            "google_project_iam_policy",
        )
        for body in of_type(config, rtype).values()
    ]
    assert project_roles == ["roles/bigquery.jobUser"]
    assert not of_type(config, "google_storage_bucket_iam_binding")
    assert not of_type(config, "google_storage_bucket_iam_policy")


def test_apis_are_enabled_and_left_on_at_destroy(config: dict[str, dict[str, Any]]) -> None:
    services = of_type(config, "google_project_service")
    assert services, "no google_project_service"
    text = " ".join(str(body.get("for_each", body.get("service"))) for body in services.values())
    for api in ("storage.googleapis.com", "bigquery.googleapis.com", "iam.googleapis.com"):
        assert api in text
    assert all(body["disable_on_destroy"] is False for body in services.values())


def test_every_variable_is_typed_and_described(config: dict[str, dict[str, Any]]) -> None:
    expected = {
        "project_id",
        "region",
        "location",
        "bucket_name",
        "staging_dataset",
        "marts_dataset",
        "service_account_id",
        "noncurrent_version_retention_days",
    }
    assert set(config["variable"]) == expected
    for name, body in config["variable"].items():
        assert body.get("description", "").strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    assert config["variable"]["service_account_id"]["default"] == "seattle-crime-pipeline"
    assert config["variable"]["noncurrent_version_retention_days"]["default"] == 30


def test_outputs_give_the_pipeline_settings(config: dict[str, dict[str, Any]]) -> None:
    outputs = config["output"]
    for name, body in outputs.items():
        assert body.get("description", "").strip(), f"output {name} has no description"
    assert outputs["lake_url"]["value"] == f"gs://{LAKE}/lake"
    assert outputs["bucket_name"]["value"] == LAKE
    assert outputs["location"]["value"] == "${var.location}"
    assert outputs["service_account_email"]["value"] == "${google_service_account.pipeline.email}"
    assert outputs["key_create_command"]["value"] == (
        "gcloud iam service-accounts keys create creds/key.json "
        "--iam-account=${google_service_account.pipeline.email}"
    )
    assert {"staging_dataset_id", "marts_dataset_id"} <= set(outputs)


def test_example_tfvars_names_only_declared_variables(config: dict[str, dict[str, Any]]) -> None:
    example = parse((TERRAFORM_DIR / "terraform.tfvars.example").read_text())
    assert set(example) <= set(config["variable"])
    assert {"project_id", "bucket_name"} <= set(example)


def test_state_and_real_tfvars_cannot_be_committed() -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    paths = [
        "terraform/terraform.tfvars",
        "terraform/terraform.tfstate",
        "terraform/terraform.tfstate.backup",
        "terraform/.terraform/providers/x",
        "terraform/.terraform.lock.hcl",
    ]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert sorted(result.stdout.split()) == sorted(paths)
    tracked = subprocess.run(
        ["git", "ls-files", "terraform"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [p for p in tracked if p.endswith((".tfstate", ".tfvars", ".lock.hcl"))]
