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
  description = "Telegram chat the alert relay posts to (the bot token is a secret, TELEGRAM_BOT_TOKEN)."
  type        = string
  default     = null
}

variable "webhook_invoker_members" {
  description = <<-EOT
    Who may call webhook_intake (roles/run.invoker), e.g. "serviceAccount:sender@upstream.iam.gserviceaccount.com":
    the video source signs each delivery with HMAC and calls with a Google ID token of this identity.
  EOT
  type        = list(string)
  default     = []
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
    API key or JWT); `admin_emails` are the API's admins among them (IAP_ADMIN_EMAILS), everyone
    else is a user who sees their own jobs.
  EOT
  type = object({
    enabled      = bool
    members      = optional(list(string), [])
    admin_emails = optional(list(string), [])
  })
  default = { enabled = false }

  validation {
    condition     = !var.iap.enabled || length(var.iap.members) > 0
    error_message = "With IAP on, iap.members must name who may pass it; nobody could sign in otherwise."
  }
}
