locals {
  # One chart per question a person asks during an incident; each data set is a filter, how to
  # align each series (counters as a delta per period: "per minute" reads directly) and how to
  # combine them.
  charts = [
    {
      title = "Throughput: jobs started / finished per minute"
      unit  = "jobs/min"
      data = [
        { filter = local.metric["jobs_started_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.pipeline"], period = "60s" },
        { filter = local.metric["jobs_finished_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.pipeline", "metric.label.status"], period = "60s" },
      ]
    },
    {
      title = "Failures: worker failures / successes per minute"
      unit  = "attempts/min"
      data = [
        { filter = local.metric["worker_failure_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.workflow_id"], period = "60s" },
        { filter = local.metric["worker_success_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.workflow_id"], period = "60s" },
      ]
    },
    {
      title = "Stage durations (p95)"
      unit  = "s"
      data = [
        { filter = local.metric["stage_duration_seconds"], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = ["metric.label.pipeline", "metric.label.stage"], period = "60s" },
      ]
    },
    {
      title = "Worker action duration (p50, p95)"
      unit  = "s"
      data = [
        { filter = local.metric["worker_action_duration_seconds"], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_50", group_by = ["metric.label.workflow_id"], period = "60s" },
        { filter = local.metric["worker_action_duration_seconds"], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = ["metric.label.workflow_id"], period = "60s" },
      ]
    },
    {
      title = "DLQ: dead-lettered per minute, undelivered on dead-letter and parking subscriptions"
      unit  = "messages"
      data = [
        { filter = local.metric["worker_dlq_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.workflow_id"], period = "60s" },
        { filter = "${local.pubsub_metric}/num_undelivered_messages\" AND resource.label.subscription_id = one_of(${join(", ", compact([local.one_of["dead_letter"], local.one_of["parking"]]))})", aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group_by = ["resource.label.subscription_id"], period = "60s" },
      ]
    },
    {
      title = "Backlog: oldest unacked message age (s) and undelivered messages"
      unit  = "s / messages"
      data = [
        { filter = "${local.pubsub_metric}/oldest_unacked_message_age\" AND resource.label.subscription_id = one_of(${local.one_of["work"]})", aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group_by = ["resource.label.subscription_id"], period = "60s" },
        { filter = "${local.pubsub_metric}/num_undelivered_messages\" AND resource.label.subscription_id = one_of(${local.one_of["work"]})", aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group_by = ["resource.label.subscription_id"], period = "60s" },
      ]
    },
    {
      title = "Jobs in flight"
      unit  = "jobs"
      data = [
        { filter = local.metric["jobs_in_flight"], aligner = "ALIGN_MEAN", reducer = "REDUCE_SUM", group_by = ["metric.label.pipeline"], period = "60s" },
      ]
    },
    {
      title = "Stale jobs found per minute"
      unit  = "jobs/min"
      data = [
        { filter = local.metric["stale_jobs_found_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.pipeline"], period = "60s" },
      ]
    },
    {
      title = "Cost per hour by pipeline and kind"
      unit  = "currency/h"
      data = [
        { filter = local.metric["job_cost_total"], aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.pipeline", "metric.label.kind"], period = "3600s" },
      ]
    },
    {
      title = "Cloud Run 5xx per minute and error log lines"
      unit  = "per min"
      data = [
        { filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\" AND resource.label.service_name = one_of(${local.services})", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["resource.label.service_name"], period = "60s" },
        { filter = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.error_logs.name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group_by = ["metric.label.service"], period = "60s" },
      ]
    },
  ]

  tile_width  = 24
  tile_height = 16
}

resource "google_monitoring_dashboard" "this" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "jobtrail ${var.environment}"
    labels      = { jobtrail = "" }
    mosaicLayout = {
      columns = 48
      tiles = [
        for i, chart in local.charts : {
          xPos   = (i % 2) * local.tile_width
          yPos   = floor(i / 2) * local.tile_height
          width  = local.tile_width
          height = local.tile_height
          widget = {
            title = chart.title
            xyChart = {
              chartOptions = { mode = "COLOR" }
              yAxis        = { label = chart.unit, scale = "LINEAR" }
              dataSets = [
                for d in chart.data : {
                  plotType           = "LINE"
                  targetAxis         = "Y1"
                  minAlignmentPeriod = d.period
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter = d.filter
                      aggregation = {
                        alignmentPeriod    = d.period
                        perSeriesAligner   = d.aligner
                        crossSeriesReducer = d.reducer
                        groupByFields      = d.group_by
                      }
                    }
                    unitOverride = chart.unit
                  }
                }
              ]
            }
          }
        }
      ]
    }
  })
}
