# The prod environment: the whole stack (terraform/modules/stack), named and sized for prod.
# Operator settings (project, outside services, secrets, alert destinations) come from variables.tf.

locals {
  environment = "prod"
  region      = "europe-west1"
}

module "stack" {
  source = "../../modules/stack"

  environment         = local.environment
  project_id          = var.project_id
  region              = local.region
  firestore_location  = "eur3"
  prefix              = "jt-prod-"
  deletion_protection = true

  # The API keeps one warm instance: the dashboard and its SSE stream should not wait for a cold start.
  service_overrides = {
    api = { min_instances = 1 }
  }

  alert_emails             = var.alert_emails
  slack_channel            = var.slack_channel
  slack_auth_token         = var.slack_auth_token
  telegram_chat_id         = var.telegram_chat_id
  telegram_bot_token       = var.telegram_bot_token
  slack_webhook_url        = var.slack_webhook_url
  suno_api_key             = var.suno_api_key
  secret_versions          = var.secret_versions
  propagation_wait_seconds = var.propagation_wait_seconds
  ingest_service_accounts  = var.ingest_service_accounts
  ingest_api_key_hashes    = var.ingest_api_key_hashes
  # Unset optional fields keep the stack's defaults (sunoapi.org, the Graph API).
  outside_urls = { for key, url in var.outside_urls : key => url if url != null }

  # People sign in to the API and its page with Google (Identity-Aware Proxy).
  iap = { enabled = true, members = var.iap_members, admin_emails = var.iap_admin_emails, admin_group = var.iap_admin_group }
}
