# The custom metrics' descriptors, declared before any service writes a point: Cloud Monitoring
# refuses an alert policy whose filter names a metric type it does not know ("Cannot find
# metric(s)"), and some of these are written only when something goes wrong (worker_dlq_total,
# stale_jobs_found_total). The shapes are exactly what the OpenTelemetry exporter creates
# (infra/metrics.yaml, held to it by a unit test), so its own create call later is a no-op.

locals {
  metric_catalogue = yamldecode(file(var.metrics_file))
}

resource "google_monitoring_metric_descriptor" "this" {
  for_each = local.metric_catalogue

  project      = var.project_id
  type         = "${var.metric_prefix}/${each.key}"
  display_name = each.key
  description  = each.value.description
  metric_kind  = each.value.kind
  value_type   = each.value.value_type
  unit         = each.value.unit

  dynamic "labels" {
    # opentelemetry_id: the exporter's per-process label (add_unique_identifier).
    for_each = concat(each.value.labels, ["opentelemetry_id"])
    content {
      key        = labels.value
      value_type = "STRING"
    }
  }
}
