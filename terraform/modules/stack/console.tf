# The operator console's needs from the deployment.
#
# Identity-Aware Proxy in front of the API (var.iap): people sign in with Google, IAP adds its
# signed header, and the API verifies it (services/auth/iap.py) against IAP_AUDIENCE, this
# service's own audience. Bearer JWTs and API keys keep working behind it for machines and the CLI.
#
# Admins by Google group (var.iap.admin_group): the API asks the Cloud Identity Groups API
# (services/auth/groups.py), enabled below. Reading a group's memberships is granted in the
# Workspace / Cloud Identity admin console, not by project IAM: give the API's service account the
# Groups Reader admin role, or make the group's members visible to it (docs/decisions/0014).
#
# The job page's live log lines: the API reads Cloud Logging by labels.jobId (JOB_LOG_SOURCE=cloud,
# services/reads/job_logs.py; docs/decisions/0011-job-log-lines.md).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  iap_services = var.iap.enabled ? toset(["api"]) : toset([])
  # IAP on Cloud Run signs for /projects/<number>/locations/<region>/services/<name>.
  iap_env = {
    IAP_AUDIENCE     = "/projects/${data.google_project.this.number}/locations/${var.region}/services/${var.prefix}api"
    IAP_ADMIN_EMAILS = jsonencode(var.iap.admin_emails)
    IAP_ADMIN_GROUP  = var.iap.admin_group
  }
  console_env = { JOB_LOG_SOURCE = "cloud" }
  # The catalogue's services, with IAP switched on (and its settings given) where var.iap says, and
  # the API told where its job pages read log lines.
  services_behind_iap = {
    for name, svc in local.services : name => merge(svc, {
      iap = contains(local.iap_services, name)
      env = merge(
        try(svc.env, {}),
        { for key, value in local.console_env : key => value if name == "api" },
        { for key, value in local.iap_env : key => value if contains(local.iap_services, name) },
      )
    })
  }
  iap_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-iap.iam.gserviceaccount.com"
}

# Why: IAP forwards the requests it admitted as its own service agent, which must be allowed to
# invoke the service behind it.
resource "google_cloud_run_v2_service_iam_member" "iap_invoker" {
  for_each = local.iap_services

  project  = var.project_id
  location = var.region
  name     = module.functions.service_names[each.key]
  role     = "roles/run.invoker"
  member   = local.iap_service_agent
}

# Why: who may pass IAP to reach the API and its page at all; what they may do there is the
# API's own owner/admin rule.
resource "google_iap_web_cloud_run_service_iam_member" "access" {
  for_each = { for pair in setproduct(tolist(local.iap_services), var.iap.members) : "${pair[0]}/${pair[1]}" => { service = pair[0], member = pair[1] } }

  project                = var.project_id
  location               = var.region
  cloud_run_service_name = module.functions.service_names[each.value.service]
  role                   = "roles/iap.httpsResourceAccessor"
  member                 = each.value.member

  depends_on = [google_project_service.this]
}

# Why: the job page shows a job's log lines live; the API reads them from Cloud Logging (entries.list
# filtered by labels.jobId). Read-only, and only log entries (not the private logs viewer role).
resource "google_project_iam_member" "api_reads_logs" {
  project = var.project_id
  role    = "roles/logging.viewer"
  member  = module.iam.members["api"]
}

output "job_logs" {
  description = "How the API reads job log lines: its role on Cloud Logging."
  value = {
    member = google_project_iam_member.api_reads_logs.member
    role   = google_project_iam_member.api_reads_logs.role
  }
}

# Why enabled only with a group: the API calls groups:lookup and memberships:lookup on it to know
# whether a signed-in person is an admin.
resource "google_project_service" "cloud_identity" {
  for_each = var.iap.enabled && var.iap.admin_group != "" ? toset(["cloudidentity.googleapis.com"]) : toset([])

  project            = var.project_id
  service            = each.key
  disable_on_destroy = false

  depends_on = [google_project_service.bootstrap]
}

output "iap" {
  description = "Identity-Aware Proxy: whether it is on, the audience the API checks, who may pass, the admins' group."
  value = {
    enabled = var.iap.enabled
    # What the API's environment says (IAP_ADMIN_GROUP), null when no group makes admins.
    admin_group = try(local.services_behind_iap["api"].env.IAP_ADMIN_GROUP, "") != "" ? local.services_behind_iap["api"].env.IAP_ADMIN_GROUP : null
    apis        = sort([for api in google_project_service.cloud_identity : api.service])
    services    = sort(tolist(local.iap_services))
    audience    = var.iap.enabled ? local.iap_env.IAP_AUDIENCE : null
    members     = sort([for grant in google_iap_web_cloud_run_service_iam_member.access : grant.member])
    invoker     = [for grant in google_cloud_run_v2_service_iam_member.iap_invoker : grant.member]
  }
}
