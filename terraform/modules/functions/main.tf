locals {
  service_names = { for key in keys(var.services) : key => "${var.prefix}${replace(key, "_", "-")}" }
  # Cloud Run's deterministic URLs: known before the services exist, so services can be told each
  # other's address without a dependency cycle.
  urls       = { for key, name in local.service_names : key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app" }
  audiences  = { for key, name in local.service_names : key => "jobtrail/${name}" }
  registry   = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  images     = { for key, name in local.service_names : key => "${local.registry}/${name}" }
  base_image = "${var.region}-docker.pkg.dev/serverless-runtimes/google-22-full/runtimes/${var.runtime}"
  url_env    = { for env_name, key in var.url_env : env_name => local.urls[key] }
}

data "google_project" "this" {
  project_id = var.project_id
}

# ---- one source archive of the repo -----------------------------------------------------------

data "archive_file" "source" {
  type       = "zip"
  source_dir = var.source_dir
  excludes   = var.source_excludes
  # Inside .terraform/, which git ignores.
  output_path = "${path.root}/.terraform/build/${var.prefix}source.zip"
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.prefix}source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.source_retention_days
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  # Named by content: a changed repo is a new object, an unchanged one is not re-uploaded.
  name   = "source-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption keys are accepted here, as for the Pub/Sub topics (CKV_GCP_83).
  project       = var.project_id
  location      = var.region
  repository_id = "${var.prefix}images"
  format        = "DOCKER"
  description   = "Images built from source for the jobtrail services (Terraform's first build, then Cloud Build's)."
  labels        = var.labels

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }
}

# ---- the services -----------------------------------------------------------------------------

resource "google_cloud_run_v2_service" "this" {
  for_each = var.services

  project             = var.project_id
  location            = var.region
  name                = local.service_names[each.key]
  description         = "jobtrail ${each.key} (${each.value.source})"
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  # Public services authenticate each request themselves; see terraform/entrypoints.yaml.
  invoker_iam_disabled = each.value.access == "public"
  custom_audiences     = [local.audiences[each.key]]
  labels               = merge(var.labels, { entry_point = each.key })

  # Identity-Aware Proxy signs people in before any request reaches the service (stack/console.tf).
  iap_enabled = each.value.iap

  # Terraform's first deploy builds the function from the archive; later code goes out through
  # Cloud Build (tagged revision, smoke test, traffic move), which is why these are ignored below.
  build_config {
    source_location          = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
    function_target          = each.key
    image_uri                = local.images[each.key]
    base_image               = local.base_image
    enable_automatic_updates = true
    service_account          = var.build_service_account_id
    environment_variables = {
      GOOGLE_FUNCTION_SOURCE = each.value.source
    }
  }

  template {
    service_account                  = var.service_accounts[each.key]
    timeout                          = "${each.value.timeout_seconds}s"
    max_instance_request_concurrency = each.value.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = { entry_point = each.key }

    scaling {
      min_instance_count = each.value.min_instances
      max_instance_count = each.value.max_instances
    }

    containers {
      image          = local.images[each.key]
      base_image_uri = local.base_image

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        # functions-framework serves with THREADS threads (default: 4 per vCPU) while Cloud Run sends
        # up to `concurrency` requests at once: they must agree, or requests queue inside the instance.
        for_each = merge(
          var.common_env,
          local.url_env,
          { THREADS = tostring(each.value.concurrency) },
          lookup(var.service_env, each.key, {}),
          each.value.env,
        )
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = toset(each.value.secrets)
        content {
          name = env.value
          value_source {
            secret_key_ref {
              secret  = var.secret_ids[env.value]
              version = "latest"
            }
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      build_config,
      client,
      client_version,
      traffic,
      template[0].revision,
      template[0].containers[0].image,
    ]
    precondition {
      condition     = alltrue([for s in each.value.secrets : contains(keys(var.secret_ids), s)])
      error_message = "Service ${each.key} reads a secret that var.secret_ids does not have."
    }
  }
}

# Why: a private service answers only the identities that drive it (Pub/Sub push, Cloud Scheduler,
# the webhook sender, the deployer's smoke test), each granted on that one service.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = var.invokers

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this[each.value.service].name
  role     = "roles/run.invoker"
  member   = each.value.member
}
