resource "google_secret_manager_secret" "this" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = "${var.prefix}${lower(replace(each.key, "_", "-"))}"
  labels    = merge(var.labels, { env_var = lower(each.key) })
  annotations = {
    description = each.value.description
  }

  replication {
    auto {}
  }
}

resource "random_password" "generated" {
  for_each = { for name, s in var.secrets : name => s if s.generated }

  length = each.value.length
  # URL-safe: the relay token travels as ?auth_token= in the webhook channel's URL.
  special = false
}

resource "google_secret_manager_secret_version" "generated" {
  for_each = random_password.generated

  secret      = google_secret_manager_secret.this[each.key].id
  secret_data = each.value.result
}

# Every secret a service mounts has a version before the service exists: Cloud Run refuses a revision
# whose secret has none. Operator-given values are write-only, so they never enter the state; a new
# value is rolled out by raising its version number in var.provided_versions.
resource "google_secret_manager_secret_version" "provided" {
  for_each = { for name, s in var.secrets : name => s if !s.generated }

  secret                 = google_secret_manager_secret.this[each.key].id
  secret_data_wo         = var.provided_values[each.key]
  secret_data_wo_version = lookup(var.provided_versions, each.key, 1)
}

# Why: a workload reads exactly the secrets its settings need (listed per entry point in
# terraform/entrypoints.yaml), at the secret, never project-wide.
resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = var.accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
