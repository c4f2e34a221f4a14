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
      image                = s.template[0].containers[0].image
      cpu_idle             = s.template[0].containers[0].resources[0].cpu_idle
      startup_probe_path   = s.template[0].containers[0].startup_probe[0].http_get[0].path
      liveness_probe_path  = s.template[0].containers[0].liveness_probe[0].http_get[0].path
      env                  = { for e in s.template[0].containers[0].env : e.name => e.value if length(e.value_source) == 0 }
    }
  }
}

output "image_repository" {
  description = "Artifact Registry path Cloud Build pushes the images to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}
