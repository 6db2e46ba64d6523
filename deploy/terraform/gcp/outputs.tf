output "bucket_name" {
  description = "Name of the data and artifacts bucket."
  value       = google_storage_bucket.data.name
}

output "bucket_url" {
  description = "gs:// URL to use for landing files and MLflow artifacts."
  value       = google_storage_bucket.data.url
}

output "service_account_email" {
  description = "Service account for loanrisk workloads (bind it with Workload Identity)."
  value       = google_service_account.loanrisk.email
}
