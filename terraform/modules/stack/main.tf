# The whole of jobtrail in one project: every environment root (terraform/environments/<env>) is
# this module with its own sizes and names.

locals {
  repo_root = abspath("${path.module}/../../..")
  labels    = { app = "jobtrail", env = var.environment }

  # The entry point catalogue (one list for Terraform and Cloud Build), sized for this environment.
  catalogue = yamldecode(file("${path.module}/../../entrypoints.yaml"))
  services = {
    for name, svc in local.catalogue : name => merge(svc, {
      for field, value in try(var.service_overrides[name], {}) : field => value if value != null
    })
  }

  # What every workload does: read and write Firestore, write logs, metrics and traces.
  workload_roles = ["roles/datastore.user", "roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/cloudtrace.agent"]

  secrets = {
    WEBHOOK_HMAC_SECRET = { description = "HMAC-SHA256 key of the video source's webhook signatures (the sender reads it here).", generated = true }
    SUNO_API_KEY        = { description = "sunoapi.org API key." }
    SUNO_CALLBACK_TOKEN = { description = "Token of the callback URL given to Suno.", generated = true }
    JWT_SECRET          = { description = "HS256 key of the API's JWTs.", generated = true }
    TELEGRAM_BOT_TOKEN  = { description = "Bot token the alert relay posts to Telegram with." }
    SLACK_WEBHOOK_URL   = { description = "Slack incoming webhook URL the alert relay posts to." }
    ALERT_RELAY_TOKEN   = { description = "Token Cloud Monitoring's webhook channel presents to the alert relay.", generated = true }
  }

  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    REGION               = var.region
    FIRESTORE_DATABASE   = module.firestore.database
    COLLECTION_PREFIX    = var.collection_prefix
    TOPIC_PREFIX         = var.prefix
    TRACE_EXPORTER       = "gcp"
    METRICS_EXPORTER     = "gcp"
    LOG_LEVEL            = var.log_level
  }
}

module "iam" {
  source     = "../iam"
  project_id = var.project_id
  prefix     = var.prefix

  service_accounts = merge(
    {
      for name, svc in local.services : name => {
        description   = "Runs ${name} (${svc.source})."
        project_roles = concat(local.workload_roles, try(svc.project_roles, []))
      }
    },
    {
      pubsub_push = { description = "Identity of Pub/Sub push requests (OIDC) to the worker and the DLQ analyzer." }
      scheduler   = { description = "Identity of Cloud Scheduler's calls to the sweeper and the Suno poller." }
      builder = {
        description   = "Builds the service images from source (Terraform's first deploy and Cloud Build's)."
        project_roles = ["roles/run.builder"]
      }
      deployer = {
        description = "Cloud Build: tests, deploys tagged revisions, smoke-tests them, moves or rolls back traffic."
        # sourceDeveloper + serviceUsageConsumer: `gcloud run deploy --source`; run.developer:
        # update-traffic and tags; logWriter: the build's own logs.
        project_roles = ["roles/run.sourceDeveloper", "roles/run.developer", "roles/serviceusage.serviceUsageConsumer", "roles/logging.logWriter"]
      }
    },
  )

  # The deployer deploys revisions that run as the workload accounts, built by the builder.
  act_as = {
    for name in concat(keys(local.services), ["builder"]) : "${name}/deployer" => { service_account = name, account = "deployer" }
  }

  depends_on = [google_project_service.this]
}

module "secrets" {
  source     = "../secrets"
  project_id = var.project_id
  prefix     = var.prefix
  secrets    = local.secrets
  labels     = local.labels

  accessors = {
    for grant in flatten([
      for name, svc in local.services : [
        for secret in try(svc.secrets, []) : { key = "${secret}/${name}", secret = secret, member = module.iam.members[name] }
      ]
    ]) : grant.key => { secret = grant.secret, member = grant.member }
  }

  depends_on = [google_project_service.this]
}

module "firestore" {
  source                 = "../firestore"
  project_id             = var.project_id
  location_id            = var.firestore_location
  collection_prefix      = var.collection_prefix
  indexes_file           = "${local.repo_root}/infra/firestore.indexes.json"
  point_in_time_recovery = var.deletion_protection
  delete_protection      = var.deletion_protection

  depends_on = [google_project_service.this]
}

module "functions" {
  source                   = "../functions"
  project_id               = var.project_id
  region                   = var.region
  prefix                   = var.prefix
  services                 = local.services
  service_accounts         = { for name in keys(local.services) : name => module.iam.emails[name] }
  build_service_account_id = module.iam.ids["builder"]
  source_dir               = local.repo_root
  secret_ids               = module.secrets.secret_ids
  common_env               = local.common_env
  service_env              = { alert_relay = var.telegram_chat_id != null ? { TELEGRAM_CHAT_ID = var.telegram_chat_id } : {} }
  url_env                  = { API_BASE_URL = "api", PUBLIC_BASE_URL = "suno_callback" }
  deletion_protection      = var.deletion_protection
  labels                   = local.labels

  invokers = merge(
    # Pub/Sub pushes to the entry points named by infra/topology.yaml's push_to.
    { for name in module.pubsub.push_targets : "${name}/pubsub_push" => { service = name, member = module.iam.members["pubsub_push"] } },
    { for name, svc in local.services : "${name}/scheduler" => { service = name, member = module.iam.members["scheduler"] } if try(svc.schedule, null) != null },
    # Cloud Build smoke-tests every new private revision before it gets traffic.
    { for name, svc in local.services : "${name}/deployer" => { service = name, member = module.iam.members["deployer"] } if try(svc.access, "private") == "private" },
    { for member in var.webhook_invoker_members : "webhook_intake/${member}" => { service = "webhook_intake", member = member } },
  )

  # A revision that cannot read its secrets or its APIs does not start.
  depends_on = [module.secrets, google_project_service.this]
}

module "pubsub" {
  source               = "../pubsub"
  project_id           = var.project_id
  prefix               = var.prefix
  topology_file        = "${local.repo_root}/infra/topology.yaml"
  push_endpoints       = module.functions.urls
  push_audiences       = module.functions.audiences
  push_service_account = { id = module.iam.ids["pubsub_push"], email = module.iam.emails["pubsub_push"] }
  queue_admins         = { for name, svc in local.services : name => module.iam.members[name] if try(svc.queue_admin, false) }
  labels               = local.labels

  publishers = {
    for grant in flatten([
      for name, svc in local.services : [
        for topic in try(svc.publishes, []) : { key = "${topic}/${name}", topic = topic, member = module.iam.members[name] }
      ]
    ]) : grant.key => { topic = grant.topic, member = grant.member }
  }

  depends_on = [google_project_service.this]
}

module "scheduler" {
  source                = "../scheduler"
  project_id            = var.project_id
  region                = var.region
  prefix                = var.prefix
  service_account_email = module.iam.emails["scheduler"]

  jobs = {
    for name, svc in local.services : name => {
      schedule = svc.schedule
      uri      = module.functions.urls[name]
      audience = module.functions.audiences[name]
    } if try(svc.schedule, null) != null
  }

  depends_on = [google_project_service.this]
}

module "monitoring" {
  source           = "../monitoring"
  project_id       = var.project_id
  prefix           = var.prefix
  environment      = var.environment
  runbook_base_url = "${var.repository_url}/blob/${var.repository_branch}/runbooks"
  relay_token      = module.secrets.generated_values["ALERT_RELAY_TOKEN"]
  slack_auth_token = var.slack_auth_token
  services         = values(module.functions.service_names)
  worker_service   = module.functions.service_names["pipeline_worker"]

  notification = {
    relay_url     = module.functions.urls["alert_relay"]
    emails        = var.alert_emails
    slack_channel = var.slack_channel
  }

  subscriptions = {
    work        = module.pubsub.work_subscriptions
    dead_letter = module.pubsub.dead_letter_subscriptions
    parking     = module.pubsub.parking_subscriptions
  }

  depends_on = [google_project_service.this]
}
