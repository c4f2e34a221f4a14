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
  description = "Telegram chat the alert relay posts to (the bot token is the secret TELEGRAM_BOT_TOKEN)."
  type        = string
  default     = null
}

variable "webhook_invoker_members" {
  description = "Who may call webhook_intake (roles/run.invoker): the video source's identity."
  type        = list(string)
  default     = []
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
