# The dev environment: the whole stack (terraform/modules/stack), named and sized for dev.
# Operator settings (project, alert destinations, webhook callers) come from variables.tf.

locals {
  environment = "dev"
  region      = "europe-west1"
}

module "stack" {
  source = "../../modules/stack"

  environment         = local.environment
  project_id          = var.project_id
  region              = local.region
  firestore_location  = "europe-west1"
  prefix              = "jt-dev-"
  deletion_protection = false

  alert_emails            = var.alert_emails
  slack_channel           = var.slack_channel
  slack_auth_token        = var.slack_auth_token
  telegram_chat_id        = var.telegram_chat_id
  webhook_invoker_members = var.webhook_invoker_members
}
