output "emails" {
  description = "Service account email by short name."
  value       = { for name, sa in google_service_account.this : name => sa.email }
}

output "members" {
  description = "IAM member string (\"serviceAccount:<email>\") by short name."
  value       = { for name, sa in google_service_account.this : name => sa.member }
}

output "ids" {
  description = "Fully qualified service account id (projects/<p>/serviceAccounts/<email>) by short name."
  value       = { for name, sa in google_service_account.this : name => sa.id }
}
