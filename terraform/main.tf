provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  pipeline_member = "serviceAccount:${google_service_account.pipeline.email}"
}

# cloudresourcemanager is what google_project_iam_member calls to read and write the project policy
resource "google_project_service" "services" {
  for_each = toset([
    "bigquery.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "storage.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# the lake. the original project's bucket had a lifecycle rule deleting every object older than
# 30 days: each month's Parquet file silently disappeared a month after it was written, so the lake
# never held more than the last month and the "history" in BigQuery pointed at nothing. this bucket
# has no rule that touches live objects; the only one removes old versions of overwritten files.
resource "google_storage_bucket" "lake" {
  name                        = var.bucket_name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # a terraform destroy must not take the lake with it: empty the bucket by hand if you mean it
  force_destroy = false

  # a month is rewritten whole on every refresh; versioning keeps the previous copy recoverable
  versioning {
    enabled = true
  }

  dynamic "lifecycle_rule" {
    for_each = var.noncurrent_version_retention_days > 0 ? [var.noncurrent_version_retention_days] : []
    content {
      condition {
        days_since_noncurrent_time = lifecycle_rule.value
        with_state                 = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.services]
}

resource "google_bigquery_dataset" "staging" {
  dataset_id                 = var.staging_dataset
  location                   = var.location
  description                = "External table over the Parquet lake in gs://${var.bucket_name}/lake, written by the Prefect flow."
  delete_contents_on_destroy = false

  depends_on = [google_project_service.services]
}

resource "google_bigquery_dataset" "marts" {
  dataset_id                 = var.marts_dataset
  location                   = var.location
  description                = "dbt staging views, fct_crimes and the report marts Looker Studio reads."
  delete_contents_on_destroy = false

  depends_on = [google_project_service.services]
}

resource "google_service_account" "pipeline" {
  account_id   = var.service_account_id
  display_name = "Seattle crime pipeline"
  description  = "Runs the Prefect flow and dbt: writes the lake bucket and the two crime datasets, nothing else."

  depends_on = [google_project_service.services]
}

# least privilege: objects in this one bucket, tables in these two datasets, and the right to run
# query jobs (which BigQuery grants only per project). no project-wide storage or BigQuery admin.
resource "google_storage_bucket_iam_member" "pipeline_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectAdmin"
  member = local.pipeline_member
}

resource "google_bigquery_dataset_iam_member" "pipeline_datasets" {
  for_each = {
    staging = google_bigquery_dataset.staging.dataset_id
    marts   = google_bigquery_dataset.marts.dataset_id
  }

  dataset_id = each.value
  role       = "roles/bigquery.dataEditor"
  member     = local.pipeline_member
}

resource "google_project_iam_member" "pipeline_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.pipeline_member
}
