# terraform test (mock providers): what prod sets differently from the stack's other environments.
# The stack's own invariants are tested once, in terraform/environments/dev/tests.

mock_provider "google" {}
mock_provider "random" {}

# Stand-in secrets are built, not written out, so no scanner mistakes a fixture for a credential.
variables {
  project_id               = "jobtrail-prod-test"
  suno_api_key             = join("-", ["not", "a", "suno", "key"])
  outside_urls             = { video_source = "https://videos.example.com/api", processor = "https://processor.example.com" }
  propagation_wait_seconds = 0
  iap_members              = ["group:oncall@example.com", "serviceAccount:ci@jobtrail-prod-test.iam.gserviceaccount.com"]
  iap_admin_emails         = ["lead@example.com"]
  iap_admin_group          = "jobtrail-admins@example.com"
}

run "prod_is_named_protected_and_keeps_the_api_warm" {
  command = apply

  assert {
    condition     = output.stack.deploy._PREFIX == "jt-prod-" && alltrue([for s in output.stack.services : startswith(s.name, "jt-prod-")])
    error_message = "Every prod service is named with the jt-prod- prefix."
  }

  assert {
    condition     = output.stack.services["api"].min_instances == 1
    error_message = "The API keeps one warm instance in prod (the dashboard's SSE stream)."
  }

  assert {
    condition     = alltrue([for name, s in output.stack.services : s.min_instances == 0 if name != "api"])
    error_message = "Only the API is kept warm."
  }
}

run "prod_puts_the_api_behind_identity_aware_proxy" {
  command = apply

  assert {
    condition     = output.stack.services["api"].iap_enabled && alltrue([for name, s in output.stack.services : !s.iap_enabled if name != "api"])
    error_message = "IAP is on for the API (and its page) in prod, and for nothing else."
  }

  assert {
    condition     = output.stack.iap.members == sort(["group:oncall@example.com", "serviceAccount:ci@jobtrail-prod-test.iam.gserviceaccount.com"])
    error_message = "Exactly iap_members may pass IAP (roles/iap.httpsResourceAccessor on the API)."
  }

  assert {
    condition     = length(output.stack.iap.invoker) == 1 && endswith(output.stack.iap.invoker[0], "@gcp-sa-iap.iam.gserviceaccount.com")
    error_message = "IAP's service agent may invoke the API it fronts."
  }

  assert {
    condition     = startswith(output.stack.iap.audience, "/projects/") && endswith(output.stack.iap.audience, "/locations/europe-west1/services/jt-prod-api")
    error_message = "The API checks IAP assertions against its own Cloud Run audience."
  }

  assert {
    condition     = contains(output.stack.services["api"].env_names, "IAP_AUDIENCE") && contains(output.stack.services["api"].env_names, "IAP_ADMIN_EMAILS")
    error_message = "The API is told its IAP audience and its admins."
  }
}

run "prod_makes_admins_of_the_admin_group_too" {
  command = apply

  assert {
    condition     = output.stack.iap.admin_group == "jobtrail-admins@example.com" && contains(output.stack.services["api"].env_names, "IAP_ADMIN_GROUP")
    error_message = "The API is told the admins' Google group (IAP_ADMIN_GROUP)."
  }

  assert {
    condition     = length(output.stack.iap.apis) == 1 && contains(output.stack.iap.apis, "cloudidentity.googleapis.com")
    error_message = "The Cloud Identity API is enabled, for the API's group membership checks."
  }
}
