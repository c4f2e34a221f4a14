variable "project_id" {
  description = "Project of the scheduler jobs."
  type        = string
}

variable "region" {
  description = "Region of the scheduler jobs."
  type        = string
}

variable "prefix" {
  description = "Prefix of every resource name; job names are \"<prefix><key with _ as ->\"."
  type        = string
}

variable "jobs" {
  description = <<-EOT
    Periodic HTTP calls keyed by entry point: `uri` and `audience` of the Cloud Run service,
    `schedule` in cron syntax. A missed or failed run is not retried: the next run, at most a
    schedule period later, does the same work (the sweeper and the poller are idempotent).
  EOT
  type = map(object({
    schedule         = string
    uri              = string
    audience         = string
    time_zone        = optional(string, "Etc/UTC")
    attempt_deadline = optional(string, "180s")
    body             = optional(string, "{}")
  }))
}

variable "service_account_email" {
  description = "Identity the jobs sign their OIDC tokens as (granted run.invoker on the targets only)."
  type        = string
}
