output "urls" {
  description = "Service URL by entry point."
  value       = { for key, s in google_cloud_run_v2_service.this : key => s.uri }
}

output "deterministic_urls" {
  description = "Cloud Run's deterministic URL (https://<name>-<project number>.<region>.run.app) by entry point."
  value       = local.urls
}

output "audiences" {
  description = "OIDC audience each service accepts (its custom audience), by entry point."
  value       = local.audiences
}

output "service_names" {
  description = "Cloud Run service name by entry point."
  value       = { for key, s in google_cloud_run_v2_service.this : key => s.name }
}

output "services" {
  description = "What each service was given: account, access, limits, environment variable names."
  value = {
    for key, s in google_cloud_run_v2_service.this : key => {
      name                 = s.name
      service_account      = s.template[0].service_account
      invoker_iam_disabled = s.invoker_iam_disabled
      iap_enabled          = s.iap_enabled
      timeout              = s.template[0].timeout
      concurrency          = s.template[0].max_instance_request_concurrency
      min_instances        = s.template[0].scaling[0].min_instance_count
      max_instances        = s.template[0].scaling[0].max_instance_count
      env_names            = sort([for e in s.template[0].containers[0].env : e.name])
      secret_env_names     = sort([for e in s.template[0].containers[0].env : e.name if length(e.value_source) > 0])
    }
  }
}

output "source_bucket" {
  description = "Bucket of the source archives."
  value       = google_storage_bucket.source.name
}

output "image_repository" {
  description = "Artifact Registry path the images are pushed to."
  value       = local.registry
}
