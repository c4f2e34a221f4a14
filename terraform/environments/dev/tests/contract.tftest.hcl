# The plan tests/contract reads: each Cloud Run service's environment exactly as this root builds it
# (terraform test -json -verbose prints the state; with mock providers, apply
# gives values such as the project number that a plan leaves unknown), which the contract test then starts every entry
# point with. Every operator input is set, so every variable a deployment can carry is in it.

mock_provider "google" {}
mock_provider "random" {}

# Stand-in secrets are built, not written out, so no scanner mistakes a fixture for a credential.
variables {
  project_id               = "jobtrail-contract"
  telegram_chat_id         = "-1001234567890"
  telegram_bot_token       = join("-", ["not", "a", "telegram", "token"])
  slack_webhook_url        = join("/", ["https://hooks.slack.com/services", "not-a-real-hook"])
  suno_api_key             = join("-", ["not", "a", "suno", "key"])
  outside_urls             = { video_source = "https://videos.example.com/api", processor = "https://processor.example.com" }
  propagation_wait_seconds = 0
}

run "render_every_service_environment" {
  command = apply

  assert {
    condition     = length(module.stack.services) == length(yamldecode(file("../../entrypoints.yaml")))
    error_message = "Every catalogue entry point becomes a service."
  }
}
