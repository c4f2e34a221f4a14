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
