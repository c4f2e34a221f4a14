terraform {
  # random is a child module's (secrets); declared here so a root or a test that uses this module
  # directly hands it down.
  required_providers {
    google = {
      source = "hashicorp/google"
    }
    random = {
      source = "hashicorp/random"
    }
  }
}
