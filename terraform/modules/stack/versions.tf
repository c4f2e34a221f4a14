terraform {
  # archive and random are its child modules' (functions, secrets); declared here so a root or a
  # test that uses this module directly hands them down.
  required_providers {
    google = {
      source = "hashicorp/google"
    }
    archive = {
      source = "hashicorp/archive"
    }
    random = {
      source = "hashicorp/random"
    }
  }
}
