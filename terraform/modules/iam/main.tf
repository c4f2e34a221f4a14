# One service account per workload (STYLE 13; least privilege): a leaked or misbehaving identity
# can only do what its one workload does.
resource "google_service_account" "this" {
  for_each = var.service_accounts

  project      = var.project_id
  account_id   = "${var.prefix}${replace(each.key, "_", "-")}"
  display_name = "jobtrail ${each.key}"
  description  = each.value.description
}

locals {
  project_grants = {
    for grant in flatten([
      for name, sa in var.service_accounts : [
        for role in sa.project_roles : { key = "${name}/${role}", name = name, role = role }
      ]
    ]) : grant.key => grant
  }
}

# Why: each role is listed with its workload in var.service_accounts, which says what it is for
# (Firestore access, log/metric/trace writing, build and deploy); nothing here grants more.
resource "google_project_iam_member" "this" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.this[each.value.name].email}"
}

# Why: deploying a revision that runs as an account requires actAs on that account; the deployer
# gets it on the workload accounts only, not project-wide.
resource "google_service_account_iam_member" "act_as" {
  for_each = var.act_as

  service_account_id = google_service_account.this[each.value.service_account].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.this[each.value.account].member
}
