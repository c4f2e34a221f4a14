output "stack" {
  description = "Everything the stack reports: service URLs, accounts, subscriptions, alert policies, and the Cloud Build substitutions under deploy."
  value       = module.stack
}
