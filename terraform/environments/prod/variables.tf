# What an operator of this environment provides (terraform.tfvars or TF_VAR_*); the stack's own
# descriptions in terraform/modules/stack/variables.tf say more.

variable "project_id" {
  description = "Google Cloud project of this environment."
  type        = string
}

variable "alert_emails" {
  description = "Addresses that get every alert by email."
  type        = list(string)
  default     = []
}

variable "slack_channel" {
  description = "Slack channel of the native Slack notification channel; null: none."
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
  description = "Telegram chat the alert relay posts to (with telegram_bot_token; null: no Telegram)."
  type        = string
  default     = null
}

variable "telegram_bot_token" {
  description = "Telegram bot token (from @BotFather), with telegram_chat_id. Pass via TF_VAR_telegram_bot_token."
  type        = string
  sensitive   = true
  default     = null
}

variable "slack_webhook_url" {
  description = "Slack incoming webhook URL the alert relay posts to (null: none). Pass via TF_VAR_slack_webhook_url."
  type        = string
  sensitive   = true
  default     = null
}

variable "suno_api_key" {
  description = "sunoapi.org API key. Pass via TF_VAR_suno_api_key."
  type        = string
  sensitive   = true
}

variable "secret_versions" {
  description = "Version number of each operator-given secret; raise one to roll out a new value."
  type        = map(number)
  default     = {}
}

variable "outside_urls" {
  description = "Base URLs of the outside services: video_source and processor (required), suno and instagram (defaults: sunoapi.org, Graph API v21.0)."
  type = object({
    suno         = optional(string)
    video_source = string
    processor    = string
    instagram    = optional(string)
  })
}


variable "propagation_wait_seconds" {
  description = "Pause after enabling APIs and granting roles, for Google Cloud's eventual consistency."
  type        = number
  default     = 90
}

variable "iap_members" {
  description = "Who may pass Identity-Aware Proxy to the API and its page (user:, group:, domain:, serviceAccount:)."
  type        = list(string)
}

variable "iap_admin_emails" {
  description = "Emails of the API's admins among those IAP admits; everyone else sees their own jobs."
  type        = list(string)
  default     = []
}

variable "iap_admin_group" {
  description = "Email of a Google group whose members are also the API's admins (empty: none)."
  type        = string
  default     = ""
}

variable "ingest_api_key_hashes" {
  description = "Reporting services with a reporter key: SHA-256 of the key (lower-case hex) -> reporter name."
  type        = map(string)
  default     = {}
}

variable "ingest_service_accounts" {
  description = "Reporting services (bring your own pipeline): service account email -> reporter name."
  type        = map(string)
  default     = {}
}
