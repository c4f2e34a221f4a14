output "secret_ids" {
  description = "Secret id (short name, as Cloud Run's secret_key_ref wants it) by environment variable."
  value       = { for name, s in google_secret_manager_secret.this : name => s.secret_id }
}

output "generated_values" {
  description = "Values Terraform generated, by environment variable (for wiring, e.g. the relay token into the webhook channel)."
  value       = { for name, p in random_password.generated : name => p.result }
  sensitive   = true
}

output "generated_versions" {
  description = "Secret version resources of the generated secrets, so consumers can wait for them."
  value       = { for name, v in google_secret_manager_secret_version.generated : name => v.id }
}
