variable "project_id" {
  description = "Google Cloud project that holds the lake bucket, the BigQuery datasets and the pipeline's service account (CRIME_GCP_PROJECT)."
  type        = string
}

variable "region" {
  description = "Default region for the google provider. The lake and the datasets use var.location instead."
  type        = string
  default     = "us-west1"
}

variable "location" {
  description = "One location for the lake bucket and both BigQuery datasets (CRIME_BQ_LOCATION), a multi-region such as US or EU or a region such as us-west1. BigQuery reads external tables only from a bucket in a compatible location, so keep them together."
  type        = string
  default     = "US"
}

variable "bucket_name" {
  description = "Name of the GCS bucket for the Parquet lake. Bucket names are global: prefix it with the project id, for example my-project-seattle-crime-lake."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lowercase letters, digits, dots, dashes and underscores, starting and ending with a letter or digit (no gs:// prefix)."
  }
}

variable "staging_dataset" {
  description = "BigQuery dataset for the external table over the lake (CRIME_STAGING_DATASET)."
  type        = string
  default     = "crime_staging"
}

variable "marts_dataset" {
  description = "BigQuery dataset dbt builds its views and marts in (CRIME_BQ_DATASET)."
  type        = string
  default     = "crime_marts"
}

variable "service_account_id" {
  description = "Account id (the part before @) of the service account the pipeline runs as."
  type        = string
  default     = "seattle-crime-pipeline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "service_account_id must be 6-30 characters of lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted lake object is kept as a noncurrent version before it is deleted. 0 keeps every old version forever. Live objects are never deleted by a lifecycle rule."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 0 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days, 0 or more."
  }
}
