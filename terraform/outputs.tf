output "bucket_name" {
  description = "The lake bucket (the setup script's --bucket)."
  value       = google_storage_bucket.lake.name
}

output "lake_url" {
  description = "The value for CRIME_LAKE_URL."
  value       = "gs://${google_storage_bucket.lake.name}/lake"
}

output "staging_dataset_id" {
  description = "The value for CRIME_STAGING_DATASET."
  value       = google_bigquery_dataset.staging.dataset_id
}

output "marts_dataset_id" {
  description = "The value for CRIME_BQ_DATASET."
  value       = google_bigquery_dataset.marts.dataset_id
}

output "location" {
  description = "The value for CRIME_BQ_LOCATION: the bucket and both datasets live here."
  value       = var.location
}

output "service_account_email" {
  description = "The service account the pipeline runs as."
  value       = google_service_account.pipeline.email
}

output "key_create_command" {
  description = "Run from the repository root: writes the service account's key to creds/key.json (ignored by git)."
  value       = "gcloud iam service-accounts keys create creds/key.json --iam-account=${google_service_account.pipeline.email}"
}

output "pipeline_env" {
  description = "Environment for the flow and dbt; from the repository root: eval \"$(terraform -chdir=terraform output -raw pipeline_env)\"."
  value       = <<-EOT
    export CRIME_WAREHOUSE=bigquery
    export CRIME_LAKE_URL=gs://${google_storage_bucket.lake.name}/lake
    export CRIME_GCP_PROJECT=${var.project_id}
    export CRIME_BQ_LOCATION=${var.location}
    export CRIME_STAGING_DATASET=${google_bigquery_dataset.staging.dataset_id}
    export CRIME_BQ_DATASET=${google_bigquery_dataset.marts.dataset_id}
    export CRIME_BQ_AUTH_METHOD=service-account
    export CRIME_GCP_KEYFILE="$PWD/creds/key.json"
  EOT
}
