locals {
  # Filters name the declared descriptors (metrics.tf), so a policy is created after its metric.
  metric = {
    for name, descriptor in google_monitoring_metric_descriptor.this :
    name => "metric.type = \"${descriptor.type}\" AND resource.type = \"${var.metric_resource_type}\""
  }

  pubsub_metric = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription"
  one_of        = { for role, names in var.subscriptions : role => join(", ", [for n in names : "\"${n}\""]) }
  services      = join(", ", [for s in var.services : "\"${s}\""])

  # Every condition has the same shape (a threshold on an aligned, reduced series; ratios add a
  # denominator), so one resource below renders them all.
  alerts = {
    "dlq" = {
      display_name = "DLQ growing"
      severity     = "ERROR"
      description  = "Messages are being dead-lettered (worker_dlq_total rises), or a dead-letter subscription is not drained by the DLQ analyzer."
      conditions = [
        {
          display_name = "worker_dlq_total rising (per workflow)"
          filter       = local.metric["worker_dlq_total"]
          denominator  = null
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.workflow_id"]
          period       = "300s"
          threshold    = 0
          duration     = "0s"
        },
        {
          display_name = "dead-letter subscription not drained"
          filter       = "${local.pubsub_metric}/num_undelivered_messages\" AND resource.label.subscription_id = one_of(${local.one_of["dead_letter"]})"
          denominator  = null
          aligner      = "ALIGN_MAX"
          reducer      = "REDUCE_MAX"
          group_by     = ["resource.label.subscription_id"]
          period       = "60s"
          threshold    = 0
          duration     = "${var.thresholds.dead_letter_undrained_seconds}s"
        },
      ]
    }
    "dlq-parking" = {
      display_name = "Dead letters parked"
      severity     = "ERROR"
      description  = "The DLQ analyzer itself failed on messages; they wait in the parking subscription for a person."
      conditions = [
        {
          display_name = "parking subscription not empty"
          filter       = "${local.pubsub_metric}/num_undelivered_messages\" AND resource.label.subscription_id = one_of(${local.one_of["parking"]})"
          denominator  = null
          aligner      = "ALIGN_MAX"
          reducer      = "REDUCE_MAX"
          group_by     = ["resource.label.subscription_id"]
          period       = "60s"
          threshold    = 0
          duration     = "300s"
        },
      ]
    }
    "failure-spike" = {
      display_name = "Failure ratio per pipeline"
      severity     = "ERROR"
      description  = "More than ${var.thresholds.failure_ratio * 100}% of the jobs a pipeline finished in ${var.thresholds.failure_window_seconds / 60} minutes failed."
      conditions = [
        {
          display_name = "failed / finished > ${var.thresholds.failure_ratio}"
          filter       = "${local.metric["jobs_finished_total"]} AND metric.label.status = \"failed\""
          denominator  = local.metric["jobs_finished_total"]
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.pipeline"]
          period       = "${var.thresholds.failure_window_seconds}s"
          threshold    = var.thresholds.failure_ratio
          duration     = "0s"
        },
      ]
    }
    "stale-jobs" = {
      display_name = "Stale jobs found"
      severity     = "WARNING"
      description  = "The sweeper found jobs whose stage went past its time limit without a heartbeat and timed them out."
      conditions = [
        {
          display_name = "stale_jobs_found_total rising (per pipeline)"
          filter       = local.metric["stale_jobs_found_total"]
          denominator  = null
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.pipeline"]
          period       = "300s"
          threshold    = 0
          duration     = "0s"
        },
      ]
    }
    "worker-failures" = {
      display_name = "Worker failures outgrow successes"
      severity     = "ERROR"
      description  = "For a workflow_id, worker_failure_total grew more than worker_success_total over ${var.thresholds.failure_window_seconds / 60} minutes (seed 004): most attempts fail, retries included."
      conditions = [
        {
          display_name = "worker_failure_total / worker_success_total > 1 (per workflow)"
          filter       = local.metric["worker_failure_total"]
          denominator  = local.metric["worker_success_total"]
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.workflow_id"]
          period       = "${var.thresholds.failure_window_seconds}s"
          threshold    = 1
          duration     = "0s"
        },
      ]
    }
    "action-duration" = {
      display_name = "Worker action duration spike"
      severity     = "WARNING"
      description  = "The p95 of worker_action_duration_seconds for a workflow_id stayed above ${var.thresholds.action_p95_seconds} s for 5 minutes (the handler timeout is 50 s): steps hang or an outside service slowed down."
      conditions = [
        {
          display_name = "worker_action_duration_seconds p95 > ${var.thresholds.action_p95_seconds}s (per workflow)"
          filter       = local.metric["worker_action_duration_seconds"]
          denominator  = null
          aligner      = "ALIGN_PERCENTILE_95"
          reducer      = "REDUCE_MAX"
          group_by     = ["metric.label.workflow_id"]
          period       = "300s"
          threshold    = var.thresholds.action_p95_seconds
          duration     = "300s"
        },
      ]
    }
    "backlog" = {
      display_name = "Queue backlog"
      severity     = "WARNING"
      description  = "A work subscription's oldest unacknowledged message is older than ${var.thresholds.backlog_age_seconds / 60} minutes, or more than ${var.thresholds.backlog_messages} messages wait in it (Pub/Sub's own subscription metrics): workers are not keeping up, paused, or failing."
      conditions = [
        {
          display_name = "oldest unacked message age > ${var.thresholds.backlog_age_seconds}s"
          filter       = "${local.pubsub_metric}/oldest_unacked_message_age\" AND resource.label.subscription_id = one_of(${local.one_of["work"]})"
          denominator  = null
          aligner      = "ALIGN_MAX"
          reducer      = "REDUCE_MAX"
          group_by     = ["resource.label.subscription_id"]
          period       = "60s"
          threshold    = var.thresholds.backlog_age_seconds
          duration     = "300s"
        },
        {
          display_name = "undelivered messages > ${var.thresholds.backlog_messages}"
          filter       = "${local.pubsub_metric}/num_undelivered_messages\" AND resource.label.subscription_id = one_of(${local.one_of["work"]})"
          denominator  = null
          aligner      = "ALIGN_MAX"
          reducer      = "REDUCE_MAX"
          group_by     = ["resource.label.subscription_id"]
          period       = "60s"
          threshold    = var.thresholds.backlog_messages
          duration     = "300s"
        },
      ]
    }
    "error-logs" = {
      display_name = "Error-severity logs"
      severity     = "WARNING"
      description  = "A service logged at ERROR or above (log-based metric ${google_logging_metric.error_logs.name}); the incident carries the trace and job ids of the log line."
      conditions = [
        {
          display_name = "error log lines > 0"
          filter       = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.error_logs.name}\" AND resource.type = \"cloud_run_revision\""
          denominator  = null
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.service", "metric.label.trace_id", "metric.label.job_id"]
          period       = "300s"
          threshold    = 0
          duration     = "0s"
        },
      ]
    }
    "function-errors" = {
      display_name = "Function errors (5xx)"
      severity     = "ERROR"
      description  = "A jobtrail service answers with 5xx: it crashes, times out, or its dependencies are down."
      conditions = [
        {
          display_name = "5xx responses > ${var.thresholds.server_errors_per_second}/s"
          filter       = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\" AND resource.label.service_name = one_of(${local.services})"
          denominator  = null
          aligner      = "ALIGN_RATE"
          reducer      = "REDUCE_SUM"
          group_by     = ["resource.label.service_name"]
          period       = "60s"
          threshold    = var.thresholds.server_errors_per_second
          duration     = "300s"
        },
      ]
    }
    "suno-outage" = {
      display_name = "Suno outage suspected"
      severity     = "ERROR"
      description  = "Music Clips jobs mostly fail or time out, or the Suno client's circuit breaker opened: Suno (or our access to it) is down."
      conditions = [
        {
          display_name = "music_clips not succeeding > ${var.thresholds.suno_failure_ratio}"
          filter       = "${local.metric["jobs_finished_total"]} AND metric.label.pipeline = \"music_clips\" AND metric.label.status = one_of(\"failed\", \"timed_out\")"
          denominator  = "${local.metric["jobs_finished_total"]} AND metric.label.pipeline = \"music_clips\""
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.pipeline"]
          period       = "${var.thresholds.failure_window_seconds}s"
          threshold    = var.thresholds.suno_failure_ratio
          duration     = "0s"
        },
        {
          display_name = "Suno circuit breaker opened"
          filter       = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.breaker_open.name}\" AND resource.type = \"cloud_run_revision\" AND metric.label.external_service = \"Suno\""
          denominator  = null
          aligner      = "ALIGN_DELTA"
          reducer      = "REDUCE_SUM"
          group_by     = ["metric.label.external_service"]
          period       = "300s"
          threshold    = 0
          duration     = "0s"
        },
      ]
    }
  }

  runbook_urls = { for key in concat(keys(local.alerts), [local.worker_silent]) : key => "${var.runbook_base_url}/${key}.md" }

  channels = concat(
    [google_monitoring_notification_channel.relay.name],
    [for c in google_monitoring_notification_channel.email : c.name],
    [for c in google_monitoring_notification_channel.slack : c.name],
  )
}

# ---- log-based metrics: where a log line is the signal ---------------------------------------

resource "google_logging_metric" "error_logs" {
  project     = var.project_id
  name        = "${var.prefix}error-logs"
  description = "Log lines at ERROR or above from the jobtrail services, with the job they are about."
  filter      = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name =~ \"^${var.prefix}\" AND severity >= ERROR"
  # trace_id and job_id come from the JSON logger's labels; their number is bounded by the number
  # of failing jobs, and they are what lets the alert link straight to the job and its logs.
  label_extractors = {
    service  = "EXTRACT(resource.labels.service_name)"
    trace_id = "EXTRACT(labels.traceId)"
    job_id   = "EXTRACT(labels.jobId)"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "jobtrail error log lines"
    labels {
      key         = "service"
      description = "Cloud Run service that logged it"
    }
    labels {
      key         = "trace_id"
      description = "traceId label of the log line (accountId-scenarioId-sourceId)"
    }
    labels {
      key         = "job_id"
      description = "jobId label of the log line"
    }
  }
}

resource "google_logging_metric" "breaker_open" {
  project     = var.project_id
  name        = "${var.prefix}breaker-open"
  description = "A circuit breaker in front of an external service (Suno, Instagram, the video source) opened."
  # Service names have spaces ("video source"): the name runs up to the colon.
  filter = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name =~ \"^${var.prefix}\" AND jsonPayload.message =~ \"^circuit breaker for [^:]+: [a-z-]+ -> open\""
  label_extractors = {
    external_service = "REGEXP_EXTRACT(jsonPayload.message, \"^circuit breaker for ([^:]+):\")"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "jobtrail circuit breakers opened"
    labels {
      key         = "external_service"
      description = "Which external service's breaker opened"
    }
  }
}

# ---- notification channels --------------------------------------------------------------------

# Telegram (and Slack, as a fallback path) through the alert relay; Cloud Monitoring sends the
# token as ?auth_token= on a webhook_tokenauth channel.
resource "google_monitoring_notification_channel" "relay" {
  project      = var.project_id
  display_name = "jobtrail ${var.environment}: alert relay (Telegram)"
  type         = "webhook_tokenauth"
  labels = {
    url = "${var.notification.relay_url}?auth_token=${var.relay_token}"
  }
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.notification.emails)

  project      = var.project_id
  display_name = "jobtrail ${var.environment}: ${each.key}"
  type         = "email"
  labels = {
    email_address = each.key
  }
}

resource "google_monitoring_notification_channel" "slack" {
  count = var.notification.slack_channel != null ? 1 : 0

  project      = var.project_id
  display_name = "jobtrail ${var.environment}: Slack ${var.notification.slack_channel}"
  type         = "slack"
  labels = {
    channel_name = var.notification.slack_channel
  }
  sensitive_labels {
    auth_token = var.slack_auth_token
  }

  lifecycle {
    precondition {
      condition     = var.slack_auth_token != null
      error_message = "A Slack channel needs slack_auth_token (the Cloud Monitoring Slack app's OAuth token)."
    }
  }
}

# ---- alert policies ---------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "this" {
  for_each = local.alerts

  project               = var.project_id
  display_name          = "jobtrail ${var.environment}: ${each.value.display_name}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = local.channels
  user_labels = {
    runbook     = replace(each.key, "-", "_")
    environment = var.environment
  }

  documentation {
    subject   = "jobtrail ${var.environment}: ${each.value.display_name}"
    mime_type = "text/markdown"
    content   = <<-EOT
      Runbook: ${local.runbook_urls[each.key]}

      ${each.value.description}
    EOT
    links {
      display_name = "Runbook"
      url          = local.runbook_urls[each.key]
    }
  }

  dynamic "conditions" {
    for_each = each.value.conditions
    content {
      display_name = conditions.value.display_name
      condition_threshold {
        filter          = conditions.value.filter
        comparison      = "COMPARISON_GT"
        threshold_value = conditions.value.threshold
        duration        = conditions.value.duration
        aggregations {
          alignment_period     = conditions.value.period
          per_series_aligner   = conditions.value.aligner
          cross_series_reducer = conditions.value.reducer
          group_by_fields      = conditions.value.group_by
        }
        denominator_filter = conditions.value.denominator
        dynamic "denominator_aggregations" {
          for_each = conditions.value.denominator != null ? [1] : []
          content {
            alignment_period     = conditions.value.period
            per_series_aligner   = conditions.value.aligner
            cross_series_reducer = conditions.value.reducer
            group_by_fields      = conditions.value.group_by
          }
        }
        trigger {
          count = 1
        }
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }
}
