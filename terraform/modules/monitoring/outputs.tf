output "alert_policies" {
  description = "Every alert policy by runbook name: its channels and documentation (what the tests check)."
  value = {
    for key, p in merge(google_monitoring_alert_policy.this, { (local.worker_silent) = google_monitoring_alert_policy.worker_silent }) : key => {
      display_name          = p.display_name
      notification_channels = p.notification_channels
      documentation         = p.documentation[0].content
      runbook_url           = p.documentation[0].links[0].url
      condition_count       = length(p.conditions)
      combiner              = p.combiner
      filters = flatten([
        for c in p.conditions : concat(
          [for t in c.condition_threshold : compact([t.filter, t.denominator_filter])],
          [for t in c.condition_absent : [t.filter]],
        )
      ])
    }
  }
}

output "notification_channels" {
  description = "Channel ids: the relay webhook, then email, then Slack."
  value       = local.channels
}

output "log_metrics" {
  description = "Log-based metric names."
  value       = [google_logging_metric.error_logs.name, google_logging_metric.breaker_open.name, google_logging_metric.worker_logs.name]
}

output "dashboard_id" {
  description = "The Cloud Monitoring dashboard."
  value       = google_monitoring_dashboard.this.id
}

output "metric_descriptors" {
  description = "Declared custom metric types by name, with kind and value type."
  value       = { for name, d in google_monitoring_metric_descriptor.this : name => { type = d.type, metric_kind = d.metric_kind, value_type = d.value_type } }
}
