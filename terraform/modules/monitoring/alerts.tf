# The worker went quiet while work waits (seed 004: "no new logs"): an absence of the worker's log
# lines AND undelivered messages on a work subscription, for the same while. Either alone is normal
# (an idle worker logs nothing; a busy one has a backlog), so this policy needs both (combiner AND)
# and a condition kind the threshold-only policies in main.tf do not render.

locals {
  worker_silent = "worker-silent"
}

resource "google_logging_metric" "worker_logs" {
  project     = var.project_id
  name        = "${var.prefix}worker-logs"
  description = "Log lines of the pipeline worker: every delivery logs at least one."
  filter      = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${var.worker_service}\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "jobtrail worker log lines"
  }
}

resource "google_monitoring_alert_policy" "worker_silent" {
  project               = var.project_id
  display_name          = "jobtrail ${var.environment}: Worker silent while messages wait"
  combiner              = "AND"
  severity              = "ERROR"
  notification_channels = local.channels
  user_labels = {
    runbook     = replace(local.worker_silent, "-", "_")
    environment = var.environment
  }

  documentation {
    subject   = "jobtrail ${var.environment}: Worker silent while messages wait"
    mime_type = "text/markdown"
    content   = <<-EOT
      Runbook: ${local.runbook_urls[local.worker_silent]}

      The pipeline worker wrote no log line for ${var.thresholds.worker_silent_seconds / 60} minutes while a work subscription had undelivered messages: pushes do not reach it, or it hangs before logging.
    EOT
    links {
      display_name = "Runbook"
      url          = local.runbook_urls[local.worker_silent]
    }
  }

  conditions {
    display_name = "no worker log lines for ${var.thresholds.worker_silent_seconds}s"
    condition_absent {
      filter   = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.worker_logs.name}\" AND resource.type = \"cloud_run_revision\""
      duration = "${var.thresholds.worker_silent_seconds}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "work subscription has undelivered messages"
    condition_threshold {
      filter          = "${local.pubsub_metric}/num_undelivered_messages\" AND resource.label.subscription_id = one_of(${local.one_of["work"]})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "${var.thresholds.worker_silent_seconds}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["resource.label.subscription_id"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }
}
