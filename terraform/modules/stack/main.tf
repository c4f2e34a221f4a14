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

  # Chat channels of the alert relay exist only where the operator configured them; nonsensitive:
  # whether a value was given is not itself a secret, and for_each needs it in the clear.
  chat_secrets = {
    TELEGRAM_BOT_TOKEN = nonsensitive(var.telegram_bot_token != null)
    SLACK_WEBHOOK_URL  = nonsensitive(var.slack_webhook_url != null)
  }
  secrets = merge(
    {
      WEBHOOK_HMAC_SECRET = { description = "HMAC-SHA256 key of the video source's webhook signatures (the sender reads it here).", generated = true }
      SUNO_API_KEY        = { description = "sunoapi.org API key (var.suno_api_key).", generated = false }
      SUNO_CALLBACK_TOKEN = { description = "Token of the callback URL given to Suno.", generated = true }
      JWT_SECRET          = { description = "HS256 key of the API's JWTs.", generated = true }
      ALERT_RELAY_TOKEN   = { description = "Token Cloud Monitoring's webhook channel presents to the alert relay.", generated = true }
    },
    local.chat_secrets.TELEGRAM_BOT_TOKEN ? { TELEGRAM_BOT_TOKEN = { description = "Bot token the alert relay posts to Telegram with (var.telegram_bot_token).", generated = false } } : {},
    local.chat_secrets.SLACK_WEBHOOK_URL ? { SLACK_WEBHOOK_URL = { description = "Slack incoming webhook URL the alert relay posts to (var.slack_webhook_url).", generated = false } } : {},
  )
  provided_secret_values = {
    for name, value in {
      SUNO_API_KEY       = var.suno_api_key
      TELEGRAM_BOT_TOKEN = var.telegram_bot_token
      SLACK_WEBHOOK_URL  = var.slack_webhook_url
    } : name => value if contains(keys(local.secrets), name)
  }

  # The outside services' base URLs, each given only to the entry points that call it (the
  # catalogue's `outside:`); services/deployment.py refuses an unset, loopback or plain-http one.
  outside_env = {
    suno         = { SUNO_API_URL = var.outside_urls.suno }
    video_source = { VIDEO_SOURCE_URL = var.outside_urls.video_source }
    processor    = { PROCESSOR_URL = var.outside_urls.processor }
    instagram    = { INSTAGRAM_URL = var.outside_urls.instagram }
  }
  service_env = {
    for name, svc in local.services : name => merge(
      merge([for outside in try(svc.outside, []) : local.outside_env[outside]]...),
      name == "api" ? {
        INGEST_SERVICE_ACCOUNTS = jsonencode(var.ingest_service_accounts)
        INGEST_API_KEY_HASHES   = jsonencode(var.ingest_api_key_hashes)
      } : {},
      name == "alert_relay" ? merge(
        { ALERT_CHANNELS = jsonencode([for channel, on in { telegram = local.chat_secrets.TELEGRAM_BOT_TOKEN, slack = local.chat_secrets.SLACK_WEBHOOK_URL } : channel if on]) },
        var.telegram_chat_id != null ? { TELEGRAM_CHAT_ID = var.telegram_chat_id } : {},
      ) : {},
    )
  }

  # Every one of these is required in the cloud (services/deployment.py); COLLECTION_PREFIX only
  # where the project holds more than one environment.
  common_env = merge(
    {
      ENVIRONMENT          = "cloud"
      GOOGLE_CLOUD_PROJECT = var.project_id
      REGION               = var.region
      FIRESTORE_DATABASE   = module.firestore.database
      TOPIC_PREFIX         = var.prefix
      TRACE_EXPORTER       = "gcp"
      METRICS_EXPORTER     = "gcp"
      LOG_LEVEL            = var.log_level
    },
    var.collection_prefix != "" ? { COLLECTION_PREFIX = var.collection_prefix } : {},
  )
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
        description   = "Builds the service images from source (Cloud Build's `gcloud run deploy --source`)."
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

  depends_on = [terraform_data.apis_ready]
}

module "secrets" {
  source            = "../secrets"
  project_id        = var.project_id
  prefix            = var.prefix
  secrets           = local.secrets
  provided_values   = local.provided_secret_values
  provided_versions = var.secret_versions
  labels            = local.labels

  accessors = {
    for grant in flatten([
      for name, svc in local.services : [
        for secret in concat(try(svc.secrets, []), try(svc.optional_secrets, [])) : { key = "${secret}/${name}", secret = secret, member = module.iam.members[name] }
        if contains(keys(local.secrets), secret)
      ]
    ]) : grant.key => { secret = grant.secret, member = grant.member }
  }

  depends_on = [terraform_data.apis_ready]
}

# Google Cloud is eventually consistent where a first apply meets it: a role granted a moment ago
# may not let a new Cloud Run revision read its secret yet. Services are created after this pause
# whenever the grants they depend on change (Terraform has no provider-free way to poll for it).
resource "terraform_data" "grants_propagated" {
  triggers_replace = [module.secrets.accessor_ids, module.iam.members]

  provisioner "local-exec" {
    command = "sleep ${var.propagation_wait_seconds}"
  }
}

module "firestore" {
  source                 = "../firestore"
  project_id             = var.project_id
  location_id            = var.firestore_location
  collection_prefix      = var.collection_prefix
  indexes_file           = "${local.repo_root}/infra/firestore.indexes.json"
  point_in_time_recovery = var.deletion_protection
  delete_protection      = var.deletion_protection

  depends_on = [terraform_data.apis_ready]
}

module "functions" {
  source           = "../functions"
  project_id       = var.project_id
  region           = var.region
  prefix           = var.prefix
  services         = local.services_behind_iap
  service_accounts = { for name in keys(local.services) : name => module.iam.emails[name] }
  secret_ids       = module.secrets.secret_ids
  common_env       = local.common_env
  service_env      = local.service_env
  # Suno calls back the callback service; alert messages link jobs to the API's pages.
  # Suno calls back the callback service; alert messages link jobs to the API's pages; reporting
  # services sign their Google ID tokens for the API's URL.
  url_env = {
    pipeline_worker = { PUBLIC_BASE_URL = "suno_callback" }
    alert_relay     = { API_BASE_URL = "api" }
    api             = { INGEST_AUDIENCE = "api" }
  }
  placeholder_image   = var.placeholder_image
  deletion_protection = var.deletion_protection
  labels              = local.labels

  invokers = merge(
    # Pub/Sub pushes to the entry points named by infra/topology.yaml's push_to.
    { for name in module.pubsub.push_targets : "${name}/pubsub_push" => { service = name, member = module.iam.members["pubsub_push"] } },
    { for name, svc in local.services : "${name}/scheduler" => { service = name, member = module.iam.members["scheduler"] } if try(svc.schedule, null) != null },
    # Cloud Build smoke-tests every new private revision before it gets traffic.
    { for name, svc in local.services : "${name}/deployer" => { service = name, member = module.iam.members["deployer"] } if try(svc.access, "private") == "private" },
  )

  # A revision that cannot read its secrets (or whose secrets have no version) does not start.
  depends_on = [module.secrets, terraform_data.grants_propagated]
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

  publishers = merge(
    {
      for grant in flatten([
        for name, svc in local.services : [
          for topic in try(svc.publishes, []) : { key = "${topic}/${name}", topic = topic, member = module.iam.members[name] }
        ]
      ]) : grant.key => { topic = grant.topic, member = grant.member }
    },
    # Reporting services may publish their reports (bring your own pipeline, services/ingest).
    { for email, reporter in var.ingest_service_accounts : "ingest-reports/${reporter}" => { topic = "ingest-reports", member = "serviceAccount:${email}" } },
  )

  depends_on = [terraform_data.apis_ready]
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

  depends_on = [terraform_data.apis_ready]
}

module "monitoring" {
  source           = "../monitoring"
  project_id       = var.project_id
  prefix           = var.prefix
  environment      = var.environment
  runbook_base_url = "${var.repository_url}/blob/${var.repository_branch}/runbooks"
  metrics_file     = "${local.repo_root}/infra/metrics.yaml"
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

  depends_on = [terraform_data.apis_ready]
}
