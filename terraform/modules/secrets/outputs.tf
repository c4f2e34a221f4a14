output "secret_ids" {
  description = "Secret id (short name, as Cloud Run's secret_key_ref wants it) by environment variable."
  value       = { for name, s in google_secret_manager_secret.this : name => s.secret_id }
}

output "generated_values" {
  description = "Values Terraform generated, by environment variable (for wiring, e.g. the relay token into the webhook channel)."
  value       = { for name, p in random_password.generated : name => p.result }
  sensitive   = true
}

output "versions" {
  description = "Version of every secret (generated or provided), so consumers can check that each mounted secret has one."
  value       = { for name, v in merge(google_secret_manager_secret_version.generated, google_secret_manager_secret_version.provided) : name => v.id }
}

output "accessor_ids" {
  description = "Ids of the secret accessor grants (what a new revision's secret check waits on)."
  value       = [for grant in google_secret_manager_secret_iam_member.accessor : grant.id]
}
