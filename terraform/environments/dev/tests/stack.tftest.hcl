# terraform test (mock providers: nothing is created). Checks the invariants the alerting and the
# dead-lettering depend on, against what the stack (terraform/modules/stack) actually builds. Every
# environment is that module with other names and sizes, so dev's root tests it for all of them;
# prod's root tests only what prod sets differently.

mock_provider "google" {}
mock_provider "random" {}

# Stand-in secrets are built, not written out, so no scanner mistakes a fixture for a credential.
variables {
  project_id               = "jobtrail-test"
  alert_emails             = ["oncall@example.com"]
  slack_channel            = "#jobtrail-alerts"
  slack_auth_token         = join("-", ["not", "a", "slack", "token"])
  telegram_chat_id         = "-1001234567890"
  telegram_bot_token       = join("-", ["not", "a", "telegram", "token"])
  slack_webhook_url        = join("/", ["https://hooks.slack.com/services", "not-a-real-hook"])
  suno_api_key             = join("-", ["not", "a", "suno", "key"])
  outside_urls             = { video_source = "https://videos.example.com/api", processor = "https://processor.example.com" }
  propagation_wait_seconds = 0
}

run "every_subscription_dead_letters_as_the_topology_file_says" {
  command = apply

  assert {
    condition     = length(output.stack.subscriptions) > 0 && length(output.stack.subscriptions) == length(yamldecode(file("../../../infra/topology.yaml")).subscriptions)
    error_message = "Terraform must create exactly the subscriptions of infra/topology.yaml."
  }

  assert {
    condition = alltrue([
      for name, s in output.stack.subscriptions :
      s.dead_letter_topic == output.stack.topics[yamldecode(file("../../../infra/topology.yaml")).subscriptions[name].dead_letter_topic]
    ])
    error_message = "Every subscription needs a dead-letter policy pointing at the topology file's dead-letter topic."
  }

  assert {
    condition     = alltrue([for s in output.stack.subscriptions : s.max_delivery_attempts >= 5 && s.max_delivery_attempts <= 100])
    error_message = "max_delivery_attempts must be within Pub/Sub's 5..100."
  }

  assert {
    condition = alltrue([
      for name, s in output.stack.subscriptions :
      s.minimum_backoff == yamldecode(file("../../../infra/topology.yaml")).subscriptions[name].retry_policy.minimum_backoff &&
      s.maximum_backoff == yamldecode(file("../../../infra/topology.yaml")).subscriptions[name].retry_policy.maximum_backoff
    ])
    error_message = "Every subscription's retry policy must be the topology file's."
  }

  assert {
    condition = alltrue([
      for name, s in yamldecode(file("../../../infra/topology.yaml")).subscriptions :
      try(s.push_to, null) == null ? output.stack.subscriptions[name].push_endpoint == null : output.stack.subscriptions[name].push_endpoint == output.stack.urls[s.push_to]
    ])
    error_message = "Push subscriptions must push to their push_to entry point; the others must stay pull."
  }
}

run "every_alert_policy_notifies_and_links_its_runbook" {
  command = apply

  assert {
    condition     = length(output.stack.alert_policies) >= 6
    error_message = "Expected the DLQ, failure ratio, stale jobs, backlog, error logs and function errors policies at least."
  }

  assert {
    condition = alltrue([
      for p in output.stack.alert_policies : length(p.notification_channels) == 3 && alltrue([for c in p.notification_channels : c != null && c != ""])
    ])
    error_message = "Every alert policy must notify the relay (Telegram), email and Slack."
  }

  assert {
    condition = alltrue([
      for name, p in output.stack.alert_policies :
      p.runbook_url == "https://github.com/jobtrail/jobtrail/blob/main/runbooks/${name}.md" && strcontains(p.documentation, p.runbook_url)
    ])
    error_message = "Every alert policy's documentation must link its runbook."
  }

  assert {
    condition     = alltrue([for name in keys(output.stack.alert_policies) : fileexists("../../../runbooks/${name}.md")])
    error_message = "Every alert policy's runbook must exist under runbooks/."
  }
}

run "seed_004_signals_are_alert_policies" {
  command = apply

  assert {
    condition     = alltrue([for name in ["worker-failures", "action-duration", "worker-silent", "backlog", "dlq"] : contains(keys(output.stack.alert_policies), name)])
    error_message = "Seed 004's signals (failures outgrowing successes, duration spike, silent worker, backlog, DLQ) must each be an alert policy."
  }

  assert {
    condition     = output.stack.alert_policies["worker-silent"].combiner == "AND" && output.stack.alert_policies["worker-silent"].condition_count == 2
    error_message = "The silent-worker alert must need both log absence and undelivered messages."
  }

  assert {
    condition     = output.stack.alert_policies["backlog"].condition_count == 2
    error_message = "The backlog alert must watch both the oldest unacked age and the undelivered count."
  }

  assert {
    condition     = alltrue([for name in ["worker-failures", "action-duration", "worker-silent"] : length(output.stack.alert_policies[name].notification_channels) == 3 && fileexists("../../../runbooks/${name}.md")])
    error_message = "Every new alert notifies all channels and has its runbook."
  }
}

run "services_are_least_privilege_and_guarded" {
  command = apply

  assert {
    condition     = length(distinct([for s in output.stack.services : s.service_account])) == length(output.stack.services)
    error_message = "Each service must run as its own service account."
  }

  assert {
    condition     = sort([for name, s in output.stack.services : name if s.invoker_iam_disabled]) == sort(["alert_relay", "api", "suno_callback", "webhook_intake"])
    error_message = "Exactly the services whose callers cannot mint Google ID tokens (HMAC, relay token, JWT, callback token) skip the invoker IAM check; the worker, DLQ analyzer, sweeper and poller stay private."
  }

  assert {
    condition = alltrue([
      for name, s in output.stack.services :
      s.secret_env_names == sort(concat(try(yamldecode(file("../../entrypoints.yaml"))[name].secrets, []), try(yamldecode(file("../../entrypoints.yaml"))[name].optional_secrets, [])))
    ])
    error_message = "Each service must get exactly its catalogue secrets (optional ones too, where configured), from Secret Manager."
  }

  assert {
    condition = alltrue([
      for s in output.stack.services : length(setsubtract(["GOOGLE_CLOUD_PROJECT", "TOPIC_PREFIX", "TRACE_EXPORTER", "METRICS_EXPORTER", "THREADS"], s.env_names)) == 0
    ])
    error_message = "Every service needs the settings that point it at this project."
  }

  # A push request that outlives the ack deadline is redelivered while still running.
  assert {
    condition = alltrue([
      for name, s in yamldecode(file("../../../infra/topology.yaml")).subscriptions :
      tonumber(trimsuffix(output.stack.services[s.push_to].timeout, "s")) <= s.ack_deadline_seconds if try(s.push_to, null) != null
    ])
    error_message = "A push target's request timeout must not exceed its subscriptions' ack deadline."
  }

  assert {
    condition     = sort(keys(output.stack.scheduler_jobs)) == sort(["poll_music_jobs", "sweep_stale_jobs"])
    error_message = "The sweeper and the Suno poller run on Cloud Scheduler."
  }

  assert {
    condition     = length(output.stack.ttl_fields) >= 4 && contains(output.stack.ttl_fields, "events.expireAt") && contains(output.stack.ttl_fields, "jobs.expireAt")
    error_message = "TTL policies on jobs, events, executions and idempotency are expected."
  }
}

run "without_slack_the_relay_and_email_remain" {
  command = apply

  variables {
    slack_channel    = null
    slack_auth_token = null
  }

  assert {
    condition     = alltrue([for p in output.stack.alert_policies : length(p.notification_channels) == 2])
    error_message = "Without Slack, every alert policy still notifies the relay and email."
  }
}

# What a first `terraform apply` on a fresh project needs to get right, held here because nothing
# here can reach Google.
run "a_first_apply_can_succeed" {
  command = apply

  assert {
    condition     = alltrue([for s in output.stack.services : s.image == "us-docker.pkg.dev/cloudrun/container/hello"])
    error_message = "Every service must start from an image that exists before any build (the placeholder); Cloud Build ships the code."
  }

  assert {
    condition = alltrue(flatten([
      for p in output.stack.alert_policies : [
        for f in p.filters : [
          for t in regexall("custom\\.googleapis\\.com/[a-z0-9_/]+", f) : contains([for d in output.stack.metric_descriptors : d.type], t)
        ]
      ]
    ]))
    error_message = "Every custom metric an alert policy filters on must be declared (infra/metrics.yaml), or the policy is refused before the metric is first written."
  }

  assert {
    condition     = sort(keys(output.stack.metric_descriptors)) == sort(keys(yamldecode(file("../../../infra/metrics.yaml"))))
    error_message = "Terraform must declare exactly the metrics of infra/metrics.yaml."
  }

  assert {
    condition = alltrue(flatten([
      for name, s in output.stack.services : [for secret in s.secret_env_names : output.stack.secrets[secret].has_version]
    ]))
    error_message = "Every secret a service mounts must have a version, or Cloud Run refuses the revision."
  }

  assert {
    condition = alltrue([
      for name, s in output.stack.services : s.startup_probe_path == "/health" && s.liveness_probe_path == "/health"
    ])
    error_message = "Every service is probed on GET /health (services/http.py)."
  }

  assert {
    condition = alltrue([
      for name, s in output.stack.services :
      s.cpu_idle == (yamldecode(file("../../entrypoints.yaml"))[name].cpu_allocation == "request") && s.env["CPU_ALLOCATION"] == yamldecode(file("../../entrypoints.yaml"))[name].cpu_allocation
    ])
    error_message = "Each service's Cloud Run CPU model (cpu_idle) and its CPU_ALLOCATION setting must both follow the catalogue's cpu_allocation."
  }

  assert {
    condition     = sort([for name, s in output.stack.services : name if s.cpu_idle == false]) == sort(["api", "pipeline_worker", "webhook_intake"])
    error_message = "CPU is always allocated exactly where work runs between requests (docs/decisions/0008-cloud-run-cpu.md)."
  }

  assert {
    condition     = alltrue([for s in output.stack.services : s.env["ENVIRONMENT"] == "cloud"])
    error_message = "Every service runs in cloud mode, where dev defaults are refused."
  }

  assert {
    condition = (
      output.stack.services["pipeline_worker"].env["SUNO_API_URL"] == "https://api.sunoapi.org" &&
      output.stack.services["pipeline_worker"].env["VIDEO_SOURCE_URL"] == "https://videos.example.com/api" &&
      output.stack.services["pipeline_worker"].env["PROCESSOR_URL"] == "https://processor.example.com" &&
      output.stack.services["pipeline_worker"].env["INSTAGRAM_URL"] == "https://graph.facebook.com/v21.0" &&
      output.stack.services["api"].env["SUNO_API_URL"] == "https://api.sunoapi.org" &&
      !contains(keys(output.stack.services["api"].env), "VIDEO_SOURCE_URL") &&
      !contains(keys(output.stack.services["webhook_intake"].env), "SUNO_API_URL")
    )
    error_message = "Each outside URL reaches exactly the services that call it."
  }
}

run "without_chat_channels_the_relay_mounts_no_chat_secret" {
  command = apply

  variables {
    telegram_chat_id   = null
    telegram_bot_token = null
    slack_webhook_url  = null
  }

  assert {
    condition     = join(",", output.stack.services["alert_relay"].secret_env_names) == "ALERT_RELAY_TOKEN" && !contains(keys(output.stack.secrets), "TELEGRAM_BOT_TOKEN") && !contains(keys(output.stack.secrets), "SLACK_WEBHOOK_URL")
    error_message = "A chat channel nobody configured has no secret and is not mounted."
  }
}

run "an_outside_url_at_loopback_or_plain_http_is_refused" {
  command = plan

  module {
    source = "../../modules/stack"
  }

  variables {
    environment         = "staging"
    region              = "europe-west1"
    firestore_location  = "europe-west1"
    deletion_protection = false
    prefix              = "jt-stg-"
    outside_urls        = { video_source = "https://127.0.0.1:8090/video", processor = "http://processor.example.com" }
  }

  expect_failures = [var.outside_urls]
}

run "a_prefix_too_long_for_account_ids_is_refused" {
  command = plan

  module {
    source = "../../modules/stack"
  }

  variables {
    environment         = "staging"
    region              = "europe-west1"
    firestore_location  = "europe-west1"
    deletion_protection = false
    prefix              = "jobtrail-staging-"
    outside_urls        = { video_source = "https://videos.example.com", processor = "https://processor.example.com" }
  }

  expect_failures = [var.prefix]
}

run "identity_aware_proxy_is_off_unless_switched_on" {
  command = apply

  assert {
    condition     = !output.stack.iap.enabled && alltrue([for s in output.stack.services : !s.iap_enabled]) && length(output.stack.iap.members) == 0
    error_message = "Without the switch no service is behind IAP and nobody is granted IAP access."
  }

  assert {
    condition     = !contains(output.stack.services["api"].env_names, "IAP_AUDIENCE")
    error_message = "Without IAP the API is not told an IAP audience (the header then signs nobody in)."
  }

  assert {
    condition     = output.stack.iap.admin_group == null && length(output.stack.iap.apis) == 0
    error_message = "Without IAP no admin group is checked and the Cloud Identity API stays off."
  }
}

run "admins_by_google_group_are_wired_to_the_api_with_the_cloud_identity_api" {
  command = apply

  module {
    source = "../../modules/stack"
  }

  variables {
    environment         = "staging"
    region              = "europe-west1"
    firestore_location  = "europe-west1"
    deletion_protection = false
    prefix              = "jt-stg-"
    iap                 = { enabled = true, members = ["group:oncall@example.com"], admin_group = "jobtrail-admins@example.com" }
  }

  assert {
    condition     = output.iap.admin_group == "jobtrail-admins@example.com" && contains(output.services["api"].env_names, "IAP_ADMIN_GROUP") && contains(output.services["api"].env_names, "IAP_ADMIN_EMAILS")
    error_message = "The API is told the admins' group (IAP_ADMIN_GROUP) beside the admin emails."
  }

  assert {
    condition     = alltrue([for name, s in output.services : !contains(s.env_names, "IAP_ADMIN_GROUP") if name != "api"])
    error_message = "Only the API checks group membership."
  }

  assert {
    condition     = length(output.iap.apis) == 1 && contains(output.iap.apis, "cloudidentity.googleapis.com")
    error_message = "The Cloud Identity API (groups:lookup, memberships:lookup) is enabled with a group."
  }
}

run "an_admin_group_that_is_not_an_email_is_refused" {
  command = plan

  module {
    source = "../../modules/stack"
  }

  variables {
    environment         = "staging"
    region              = "europe-west1"
    firestore_location  = "europe-west1"
    deletion_protection = false
    prefix              = "jt-stg-"
    iap                 = { enabled = true, members = ["group:oncall@example.com"], admin_group = "jobtrail admins" }
  }

  expect_failures = [var.iap]
}

run "the_api_reads_job_log_lines_from_cloud_logging" {
  command = apply

  assert {
    condition     = output.stack.job_logs.role == "roles/logging.viewer" && output.stack.job_logs.member != null
    error_message = "The API's account may read log entries, for the job page's log lines."
  }

  assert {
    condition     = contains(output.stack.services["api"].env_names, "JOB_LOG_SOURCE") && alltrue([for name, s in output.stack.services : !contains(s.env_names, "JOB_LOG_SOURCE") if name != "api"])
    error_message = "The API reads job logs from Cloud Logging; no other service is told to."
  }
}

run "a_reporter_key_reaches_the_api_as_its_hash" {
  command = apply

  variables {
    ingest_api_key_hashes = { (sha256(join("-", ["not", "a", "reporter", "key"]))) = "clip-render" }
  }

  assert {
    condition     = contains(output.stack.services["api"].env_names, "INGEST_API_KEY_HASHES")
    error_message = "The API learns reporter keys from Terraform, by their hashes."
  }
}

run "a_reporter_key_given_in_clear_is_refused" {
  command = plan

  module {
    source = "../../modules/stack"
  }

  variables {
    environment           = "staging"
    region                = "europe-west1"
    firestore_location    = "europe-west1"
    deletion_protection   = false
    prefix                = "jt-stg-"
    ingest_api_key_hashes = { (join("-", ["not", "a", "reporter", "key"])) = "clip-render" }
  }

  expect_failures = [var.ingest_api_key_hashes]
}
