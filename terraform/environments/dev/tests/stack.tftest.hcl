# terraform test (mock providers: nothing is created). Checks the invariants the alerting and the
# dead-lettering depend on, against what the stack (terraform/modules/stack) actually builds. Every
# environment is that module with other names and sizes, so dev's root tests it for all of them;
# prod's root tests only what prod sets differently.

mock_provider "google" {}
mock_provider "archive" {}
mock_provider "random" {}

variables {
  project_id              = "jobtrail-test"
  alert_emails            = ["oncall@example.com"]
  slack_channel           = "#jobtrail-alerts"
  slack_auth_token        = "test"
  telegram_chat_id        = "-1001234567890"
  webhook_invoker_members = ["serviceAccount:sender@upstream-project.iam.gserviceaccount.com"]
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
    condition     = sort([for name, s in output.stack.services : name if s.invoker_iam_disabled]) == sort(["alert_relay", "api", "suno_callback"])
    error_message = "Only the services that authenticate callers themselves (relay token, JWT, callback token) may skip the invoker IAM check."
  }

  assert {
    condition = alltrue([
      for name, s in output.stack.services :
      s.secret_env_names == sort(try(yamldecode(file("../../entrypoints.yaml"))[name].secrets, []))
    ])
    error_message = "Each service must get exactly its catalogue secrets, from Secret Manager."
  }

  assert {
    condition = alltrue([
      for s in output.stack.services : length(setsubtract(["GOOGLE_CLOUD_PROJECT", "TOPIC_PREFIX", "COLLECTION_PREFIX", "TRACE_EXPORTER", "METRICS_EXPORTER", "THREADS"], s.env_names)) == 0
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
  }

  expect_failures = [var.prefix]
}
