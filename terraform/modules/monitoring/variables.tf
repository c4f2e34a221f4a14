variable "project_id" {
  description = "Project whose metrics are watched and where policies, channels and the dashboard live."
  type        = string
}

variable "prefix" {
  description = "Prefix of every resource name (services, subscriptions, log-based metrics)."
  type        = string
}

variable "environment" {
  description = "Environment name shown in policy names and notifications (\"dev\", \"prod\")."
  type        = string
}

variable "runbook_base_url" {
  description = "Where runbooks/ is browsable (e.g. \"https://github.com/acme/jobtrail/blob/main/runbooks\"); each policy links \"<this>/<alert>.md\"."
  type        = string

  validation {
    condition     = can(regex("^https://", var.runbook_base_url)) && !endswith(var.runbook_base_url, "/")
    error_message = "runbook_base_url must be an https URL without a trailing slash."
  }
}

variable "metric_prefix" {
  description = "Metric type prefix of the OpenTelemetry instruments (services/telemetry/metrics.py CLOUD_MONITORING_PREFIX)."
  type        = string
  default     = "custom.googleapis.com/jobtrail"
}

variable "metric_resource_type" {
  description = "Monitored resource the OpenTelemetry exporter writes from Cloud Run (its resource detector maps Cloud Run to generic_task)."
  type        = string
  default     = "generic_task"
}

variable "notification" {
  description = <<-EOT
    Where alerts go. `relay_url` is the alert relay service (Telegram through a webhook_tokenauth
    channel); `emails` get an email channel each; `slack_channel` (e.g. "#jobtrail-alerts") adds
    Cloud Monitoring's native Slack channel, which needs var.slack_auth_token.
  EOT
  type = object({
    relay_url     = string
    emails        = optional(list(string), [])
    slack_channel = optional(string)
  })
}

variable "relay_token" {
  description = "Token the alert relay expects (?auth_token=); the relay reads the same value from Secret Manager."
  type        = string
  sensitive   = true
}

variable "slack_auth_token" {
  description = "OAuth token of the Cloud Monitoring Slack app for the native Slack channel (null: no Slack channel)."
  type        = string
  sensitive   = true
  default     = null
}

variable "subscriptions" {
  description = "Full Pub/Sub subscription names by role: `work` (carry jobs), `dead_letter` (drained by the DLQ analyzer), `parking` (read by a person)."
  type = object({
    work        = list(string)
    dead_letter = list(string)
    parking     = list(string)
  })
}

variable "worker_service" {
  description = "Full Cloud Run service name of the pipeline worker, whose silence is alerted on."
  type        = string
}

variable "services" {
  description = "Full Cloud Run service names whose 5xx responses are alerted on."
  type        = list(string)
}

variable "thresholds" {
  description = "Alert thresholds; the defaults are the starting point the runbooks describe."
  type = object({
    failure_ratio                 = optional(number, 0.2)
    failure_window_seconds        = optional(number, 900)
    suno_failure_ratio            = optional(number, 0.5)
    backlog_age_seconds           = optional(number, 600)
    dead_letter_undrained_seconds = optional(number, 600)
    server_errors_per_second      = optional(number, 0.05)
    action_p95_seconds            = optional(number, 30)
    backlog_messages              = optional(number, 1000)
    worker_silent_seconds         = optional(number, 600)
  })
  default = {}
}

variable "metrics_file" {
  description = "infra/metrics.yaml: the custom metrics the services write, as their descriptors."
  type        = string
}
