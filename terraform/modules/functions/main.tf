locals {
  service_names = { for key in keys(var.services) : key => "${var.prefix}${replace(key, "_", "-")}" }
  # Cloud Run's deterministic URLs: known before the services exist, so services can be told each
  # other's address without a dependency cycle.
  urls      = { for key, name in local.service_names : key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app" }
  audiences = { for key, name in local.service_names : key => "jobtrail/${name}" }
  # Per service: its variables that carry another service's URL.
  url_env = { for service, vars in var.url_env : service => { for env_name, key in vars : env_name => local.urls[key] } }
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption keys are accepted here, as for the Pub/Sub topics (CKV_GCP_83).
  project       = var.project_id
  location      = var.region
  repository_id = "${var.prefix}images"
  format        = "DOCKER"
  description   = "Images Cloud Build builds from source for the jobtrail services."
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

  # Terraform creates each service on a placeholder image that exists (var.placeholder_image), so
  # the first apply needs no build; Cloud Build ships the code (tagged revision, smoke test, traffic
  # move), which is why the image and the traffic are left to it below. `build_config` is not used:
  # it records build metadata but starts no build (terraform-provider-google #22263, #23057).
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
      image = var.placeholder_image

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        # "request": CPU only while a request is in flight (the service exports its telemetry before
        # each response); "always": background work between requests (docs/decisions/0008).
        cpu_idle          = each.value.cpu_allocation == "request"
        startup_cpu_boost = true
      }

      # Every entry point answers GET /health (services/http.py) without asking a dependency; the
      # startup probe holds traffic until the process imports, which is where it refuses to start
      # without what the deployment must set (services/deployment.py).
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 2
        failure_threshold     = 30
        http_get {
          path = "/health"
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/health"
        }
      }

      dynamic "env" {
        # functions-framework serves with THREADS threads (default: 4 per vCPU) while Cloud Run sends
        # up to `concurrency` requests at once: they must agree, or requests queue inside the instance.
        for_each = merge(
          var.common_env,
          lookup(local.url_env, each.key, {}),
          { THREADS = tostring(each.value.concurrency), CPU_ALLOCATION = each.value.cpu_allocation },
          lookup(var.service_env, each.key, {}),
          each.value.env,
        )
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        # Optional secrets (a chat channel nobody configured) are mounted only where they exist.
        for_each = toset(concat(each.value.secrets, [for s in each.value.optional_secrets : s if contains(keys(var.secret_ids), s)]))
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
      template[0].containers[0].base_image_uri,
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
