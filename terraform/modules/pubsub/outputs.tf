output "topics" {
  description = "Topic id by topology name."
  value       = { for name, t in google_pubsub_topic.this : name => t.id }
}

output "subscriptions" {
  description = "What was created for each subscription of the topology file, by topology name."
  value = {
    for name, s in google_pubsub_subscription.this : name => {
      name                  = s.name
      topic                 = s.topic
      ack_deadline_seconds  = s.ack_deadline_seconds
      dead_letter_topic     = s.dead_letter_policy[0].dead_letter_topic
      max_delivery_attempts = s.dead_letter_policy[0].max_delivery_attempts
      minimum_backoff       = s.retry_policy[0].minimum_backoff
      maximum_backoff       = s.retry_policy[0].maximum_backoff
      push_endpoint         = length(s.push_config) > 0 ? s.push_config[0].push_endpoint : null
    }
  }
}

output "push_subscriptions" {
  description = "Topology names of the push subscriptions: the queues the API can pause."
  value       = local.push_subscriptions
}

output "push_targets" {
  description = "Entry points that receive pushes (the topology's push_to names)."
  value       = local.push_targets
}

output "work_subscriptions" {
  description = "Full names of the subscriptions that carry work (their topic is nobody's dead-letter topic)."
  value       = sort([for name, s in local.subscriptions : "${var.prefix}${name}" if !contains(local.dead_letter_topics, s.topic)])
}

output "dead_letter_subscriptions" {
  description = "Full names of the subscriptions that drain a dead-letter topic into an entry point (the DLQ analyzer)."
  value = sort([
    for name, s in local.subscriptions : "${var.prefix}${name}"
    if contains(local.dead_letter_topics, s.topic) && s.push_to != null
  ])
}

output "parking_subscriptions" {
  description = "Full names of the pull subscriptions on dead-letter topics: messages a person has to look at."
  value = sort([
    for name, s in local.subscriptions : "${var.prefix}${name}"
    if contains(local.dead_letter_topics, s.topic) && s.push_to == null
  ])
}

output "topology" {
  description = "The decoded topology file, exactly as this module read it."
  value       = local.topology
}
