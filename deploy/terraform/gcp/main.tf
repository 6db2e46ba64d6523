# A bucket for loanrisk's data and artifacts (landing/, applications/, scores/, reports/,
# mlartifacts/) and a service account that can use that bucket and nothing else.

locals {
  labels = {
    app         = "loanrisk"
    environment = var.environment
    managed-by  = "terraform"
  }
}

resource "google_storage_bucket" "data" {
  name                        = var.bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.nearline_after_days
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.noncurrent_versions_kept
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_delete_after_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.landing_delete_after_days > 0 ? [1] : []
    content {
      condition {
        age            = var.landing_delete_after_days
        matches_prefix = ["landing/"]
      }
      action {
        type = "Delete"
      }
    }
  }
}

resource "google_service_account" "loanrisk" {
  account_id   = "loanrisk-${var.environment}"
  display_name = "loanrisk ${var.environment} (pipeline, service, MLflow artifacts)"
}

# Least privilege: object read/write on this bucket only; no project-wide role.
resource "google_storage_bucket_iam_member" "objects" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.loanrisk.email}"
}

# Listing the bucket's metadata (fsspec/gcsfs globs need it); still scoped to the bucket.
resource "google_storage_bucket_iam_member" "bucket_reader" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.loanrisk.email}"
}
