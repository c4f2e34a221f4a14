locals {
  topology = yamldecode(file(var.topology_file))
  topics   = { for name, s in local.topology.topics : name => { description = try(s.description, "") } }
  # One shape for every entry; the defaults are infra/topology.py's, so both readers agree.
  subscriptions = {
    for name, s in local.topology.subscriptions : name => {
      topic                 = s.topic
      push_to               = try(s.push_to, null)
      ack_deadline_seconds  = s.ack_deadline_seconds
      message_retention     = try(s.message_retention, "604800s")
      max_delivery_attempts = s.max_delivery_attempts
      dead_letter_topic     = s.dead_letter_topic
      minimum_backoff       = s.retry_policy.minimum_backoff
      maximum_backoff       = s.retry_policy.maximum_backoff
    }
  }

  dead_letter_topics = toset([for s in values(local.subscriptions) : s.dead_letter_topic])
  push_targets       = toset([for s in values(local.subscriptions) : s.push_to if s.push_to != null])

  # Pub/Sub forwards dead letters and signs push tokens as its service agent.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_pubsub_topic" "this" {
  for_each = local.topics

  project = var.project_id
  name    = "${var.prefix}${each.key}"
  labels  = var.labels
}

resource "google_pubsub_subscription" "this" {
  for_each = local.subscriptions

  project                    = var.project_id
  name                       = "${var.prefix}${each.key}"
  topic                      = google_pubsub_topic.this[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = each.value.message_retention
  labels                     = var.labels

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.this[each.value.dead_letter_topic].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = each.value.maximum_backoff
  }

  # An idle subscription would expire after 31 days; a quiet dead-letter queue is the normal case.
  expiration_policy {
    ttl = ""
  }

  dynamic "push_config" {
    for_each = each.value.push_to != null ? [each.value.push_to] : []
    content {
      push_endpoint = var.push_endpoints[push_config.value]
      oidc_token {
        service_account_email = var.push_service_account.email
        audience              = var.push_audiences[push_config.value]
      }
    }
  }

  lifecycle {
    # The control plane pauses a queue by detaching its push endpoint (services/control.py) and
    # resumes it by attaching it again: an apply must not undo a pause, so after creation the
    # endpoint is the control plane's. A moved endpoint is re-attached by resuming the queue.
    ignore_changes = [push_config]
    precondition {
      condition     = each.value.push_to == null || contains(keys(var.push_endpoints), coalesce(each.value.push_to, "-"))
      error_message = "Subscription ${each.key} pushes to ${coalesce(each.value.push_to, "-")}, which has no endpoint in var.push_endpoints."
    }
  }
}

# Why: Pub/Sub moves an undeliverable message to the dead-letter topic as its service agent;
# without publisher on that topic the move fails and the message is redelivered forever.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_topics

  project = var.project_id
  topic   = google_pubsub_topic.this[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# Why: forwarding a message to the dead-letter topic acks it on the source subscription, which the
# service agent may only do as a subscriber of that subscription.
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Why: the service agent mints the OIDC token of every push request as the push identity
# (required for projects created before April 2021, harmless after).
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = var.push_service_account.id
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# Why: each workload publishes only to the topics it feeds (listed per entry point in
# terraform/entrypoints.yaml), granted on the topic rather than the project.
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.publishers

  project = var.project_id
  topic   = google_pubsub_topic.this[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

locals {
  push_subscriptions = toset([for name, s in local.subscriptions : name if s.push_to != null])
  queue_admin_grants = {
    for pair in setproduct(local.push_subscriptions, keys(var.queue_admins)) : "${pair[0]}/${pair[1]}" => {
      subscription = pair[0]
      member       = var.queue_admins[pair[1]]
    }
  }
}

# Why: pausing a queue removes its push endpoint (nothing is delivered), resuming puts it back;
# both update the subscription, which only the control plane may do, and only on push subscriptions.
resource "google_pubsub_subscription_iam_member" "queue_admin" {
  for_each = local.queue_admin_grants

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.value.subscription].name
  role         = "roles/pubsub.editor"
  member       = each.value.member
}

# Why: a push config with an OIDC token names the push identity; setting it (resume) requires
# actAs on that identity.
resource "google_service_account_iam_member" "queue_admin_act_as_push" {
  for_each = var.queue_admins

  service_account_id = var.push_service_account.id
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
