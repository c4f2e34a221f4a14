terraform {
  required_version = ">= 1.7"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "8.7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.9.1"
    }
  }

  # State bucket given at init: terraform init -backend-config="bucket=<project>-tfstate"
  backend "gcs" {
    prefix = "jobtrail/dev"
  }
}

provider "google" {
  project = var.project_id
  region  = local.region
  default_labels = {
    app = "jobtrail"
    env = local.environment
  }
}
