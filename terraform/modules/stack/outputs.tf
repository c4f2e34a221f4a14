output "urls" {
  description = "Service URL by entry point."
  value       = module.functions.urls
}

output "services" {
  description = "Each service's account, access, limits and environment variable names."
  value       = module.functions.services
}

output "topics" {
  description = "Topic id by topology name (infra/topology.yaml)."
  value       = module.pubsub.topics
}

output "subscriptions" {
  description = "Every subscription created from infra/topology.yaml, with its dead-letter policy and retry policy."
  value       = module.pubsub.subscriptions
}

output "metric_descriptors" {
  description = "Custom metric descriptors Terraform declares (infra/metrics.yaml)."
  value       = module.monitoring.metric_descriptors
}

output "secrets" {
  description = "Secret id and whether it has a version, by environment variable."
  value       = { for name, id in module.secrets.secret_ids : name => { id = id, has_version = contains(keys(module.secrets.versions), name) } }
}

output "alert_policies" {
  description = "Alert policies by runbook name: channels and documentation."
  value       = module.monitoring.alert_policies
}

output "service_accounts" {
  description = "Service account email by workload."
  value       = module.iam.emails
}

output "scheduler_jobs" {
  description = "Scheduler jobs by entry point."
  value       = module.scheduler.jobs
}

output "ttl_fields" {
  description = "Firestore TTL policies (\"<collection>.<field>\")."
  value       = module.firestore.ttl_fields
}

output "deploy" {
  description = "What cloudbuild.yaml needs as substitutions."
  value = {
    _REGION = var.region
    _PREFIX = var.prefix
  }
}
