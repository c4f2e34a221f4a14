# Cloud Resource Manager and Service Usage first: enabling any other API goes through them, and a
# fresh project has neither.
resource "google_project_service" "bootstrap" {
  for_each = toset(["cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com"])

  project = var.project_id
  service = each.key
  # Other things in the project may use these APIs; removing jobtrail must not switch them off.
  disable_on_destroy = false
}

resource "google_project_service" "this" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtrace.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iap.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])

  project            = var.project_id
  service            = each.key
  disable_on_destroy = false

  depends_on = [google_project_service.bootstrap]
}

# An API answers a while after it is enabled, and the Pub/Sub service agent (which the dead-letter
# grants name) is created asynchronously with the Pub/Sub API. Everything else waits for this once,
# on the first apply (and again only if the set of APIs changes).
resource "terraform_data" "apis_ready" {
  triggers_replace = [for api in google_project_service.this : api.id]

  provisioner "local-exec" {
    command = "sleep ${var.propagation_wait_seconds}"
  }
}
