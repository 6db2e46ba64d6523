variable "project_id" {
  description = "GCP project that holds the bucket and the service account."
  type        = string
}

variable "region" {
  description = "Region (and bucket location) for the data."
  type        = string
  default     = "europe-west1"
}

variable "bucket_name" {
  description = "Globally unique name of the bucket for raw data, scores, reports and MLflow artifacts."
  type        = string
}

variable "environment" {
  description = "Environment label (dev, prod)."
  type        = string
  default     = "dev"
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "nearline_after_days" {
  description = "Move objects to Nearline storage after this many days."
  type        = number
  default     = 30
}

variable "noncurrent_versions_kept" {
  description = "Older versions of an object kept before deletion."
  type        = number
  default     = 5
}

variable "noncurrent_delete_after_days" {
  description = "Delete noncurrent object versions after this many days."
  type        = number
  default     = 90
}

variable "landing_delete_after_days" {
  description = "Delete raw files under landing/ this many days after upload (0 keeps them)."
  type        = number
  default     = 365
}
