variable "environment" {
  description = "Environment name (dev, prod): the env label on every resource and in alert texts."
  type        = string
}

variable "project_id" {
  description = "Google Cloud project of this environment."
  type        = string
}

variable "region" {
  description = "Region of the services, the scheduler jobs and the source bucket."
  type        = string
}

variable "firestore_location" {
  description = "Firestore location (a region or a multi-region such as eur3)."
  type        = string
}

variable "prefix" {
  description = "Prefix of every resource name: services, accounts, topics, subscriptions, secrets, metrics. Also the services' TOPIC_PREFIX."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,12}-$", var.prefix))
    error_message = "prefix: lower-case letters, digits and hyphens, ending in \"-\", at most 14 characters (service account ids are limited to 30)."
  }
}

variable "collection_prefix" {
  description = "The services' COLLECTION_PREFIX (settings.collection_prefix); empty when the project holds one environment."
  type        = string
  default     = ""
}

variable "repository_url" {
  description = "Browsable URL of the repository; alert policies link \"<this>/blob/<branch>/runbooks/<alert>.md\"."
  type        = string
  default     = "https://github.com/jobtrail/jobtrail"
}

variable "repository_branch" {
  description = "Branch whose runbooks the alert policies link."
  type        = string
  default     = "main"
}

variable "alert_emails" {
  description = "Addresses that get every alert by email."
  type        = list(string)
  default     = []
}

variable "slack_channel" {
  description = "Slack channel of the native Slack notification channel (e.g. \"#jobtrail-alerts\"); null: none."
  type        = string
  default     = null
}

variable "slack_auth_token" {
  description = "OAuth token of the Cloud Monitoring Slack app (only with slack_channel). Pass via TF_VAR_slack_auth_token."
  type        = string
  sensitive   = true
  default     = null
}

variable "telegram_chat_id" {
  description = "Telegram chat the alert relay posts to (with telegram_bot_token)."
  type        = string
  default     = null

  validation {
    condition     = (var.telegram_chat_id == null) == nonsensitive(var.telegram_bot_token == null)
    error_message = "telegram_chat_id and telegram_bot_token go together: set both for Telegram alerts, or neither."
  }
}

variable "telegram_bot_token" {
  description = "Bot token the alert relay posts to Telegram with (from @BotFather); null: no Telegram. Stored write-only in Secret Manager. Pass via TF_VAR_telegram_bot_token."
  type        = string
  sensitive   = true
  default     = null
}

variable "slack_webhook_url" {
  description = "Slack incoming webhook URL the alert relay posts to; null: the relay does not post to Slack. Pass via TF_VAR_slack_webhook_url."
  type        = string
  sensitive   = true
  default     = null

  validation {
    condition     = var.slack_webhook_url == null || startswith(coalesce(var.slack_webhook_url, "-"), "https://hooks.slack.com/")
    error_message = "slack_webhook_url must be a Slack incoming webhook (https://hooks.slack.com/...)."
  }
}

variable "suno_api_key" {
  description = "sunoapi.org API key (its dashboard, API Key page). Stored write-only in Secret Manager as SUNO_API_KEY. Pass via TF_VAR_suno_api_key."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.suno_api_key) >= 8
    error_message = "suno_api_key must be the key sunoapi.org issued (at least 8 characters)."
  }
}

variable "secret_versions" {
  description = "Version number of each operator-given secret (SUNO_API_KEY, TELEGRAM_BOT_TOKEN, SLACK_WEBHOOK_URL); raise one to roll out a new value."
  type        = map(number)
  default     = {}
}

variable "outside_urls" {
  description = <<-EOT
    Base URLs of the outside services, each given only to the entry points that call it
    (terraform/entrypoints.yaml `outside:`): suno (sunoapi.org: the worker, runOnce's credit check,
    the poller), video_source (POST /download), processor (POST /process), instagram (the Graph
    API, versioned). The services refuse to start without them (services/deployment.py).
  EOT
  type = object({
    suno         = optional(string, "https://api.sunoapi.org")
    video_source = string
    processor    = string
    instagram    = optional(string, "https://graph.facebook.com/v21.0")
  })

  validation {
    condition = alltrue([
      for url in values(var.outside_urls) : can(regex("^https://[^/:]+", url)) && !can(regex("^https://(localhost|127\\.|\\[::1\\]|0\\.0\\.0\\.0)", url))
    ])
    error_message = "Every outside URL must be https on a real host (not loopback)."
  }
}

variable "placeholder_image" {
  description = "Image the services are created with before Cloud Build ships the code (see terraform/modules/functions)."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "propagation_wait_seconds" {
  description = "Pause after enabling the APIs and after granting roles, for Google Cloud's eventual consistency (tests set 0)."
  type        = number
  default     = 90
}

variable "service_overrides" {
  description = "Per-environment sizing of entry points (terraform/entrypoints.yaml keys); unset fields keep the catalogue's values."
  type = map(object({
    timeout_seconds = optional(number)
    concurrency     = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    cpu             = optional(string)
    memory          = optional(string)
  }))
  default = {}
}

variable "log_level" {
  description = "The services' LOG_LEVEL."
  type        = string
  default     = "INFO"
}

variable "deletion_protection" {
  description = "Protect services, the database and the source bucket from terraform destroy."
  type        = bool
}

variable "iap" {
  description = <<-EOT
    Identity-Aware Proxy in front of the API service and its page (sign-in with Google). `members`
    may pass IAP (user:, group:, domain:, serviceAccount: for machines that also send their own
    API key or JWT); `admin_emails` are the API's admins among them (IAP_ADMIN_EMAILS), and so are
    the members of the Google group `admin_group` (its email; IAP_ADMIN_GROUP, checked with the
    Cloud Identity Groups API); everyone else is a user who sees their own jobs.
  EOT
  type = object({
    enabled      = bool
    members      = optional(list(string), [])
    admin_emails = optional(list(string), [])
    admin_group  = optional(string, "")
  })
  default = { enabled = false }

  validation {
    condition     = !var.iap.enabled || length(var.iap.members) > 0
    error_message = "With IAP on, iap.members must name who may pass it; nobody could sign in otherwise."
  }

  validation {
    condition     = var.iap.admin_group == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.iap.admin_group))
    error_message = "iap.admin_group is the admins' Google group's email address (or empty for none)."
  }
}

variable "ingest_api_key_hashes" {
  description = "Services that report their own pipelines' jobs with a reporter key: the key's SHA-256 (lower-case hex) -> the reporter name their pipeline declarations list. Only the hash is configured; the key stays with the service."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for digest in keys(var.ingest_api_key_hashes) : can(regex("^[0-9a-f]{64}$", digest))])
    error_message = "ingest_api_key_hashes keys are SHA-256 digests of the keys in lower-case hex, never the keys themselves."
  }
}

variable "ingest_service_accounts" {
  description = "Services that report their own pipelines' jobs (services/ingest): their service account email -> the reporter name their pipeline declarations list. They may call the ingest API with Google ID tokens and publish to ingest-reports."
  type        = map(string)
  default     = {}
}
