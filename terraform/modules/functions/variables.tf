variable "project_id" {
  description = "Project the services run in."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, their images and their source bucket."
  type        = string
}

variable "prefix" {
  description = "Prefix of every resource name; service names are \"<prefix><key with _ as ->\"."
  type        = string
}

variable "services" {
  description = <<-EOT
    Entry points keyed by functions-framework target (terraform/entrypoints.yaml, typed here).
    `source` is the file under the repo root (GOOGLE_FUNCTION_SOURCE); `access` is "private" (only
    var.invokers may call it) or "public" (invoker IAM check off: the service authenticates every
    request itself). Sizes are the guardrails: request timeout, concurrency per instance, instances.
  EOT
  type = map(object({
    source           = string
    access           = optional(string, "private")
    schedule         = optional(string)
    secrets          = optional(list(string), [])
    publishes        = optional(list(string), [])
    project_roles    = optional(list(string), [])
    timeout_seconds  = optional(number, 60)
    concurrency      = optional(number, 80)
    min_instances    = optional(number, 0)
    max_instances    = optional(number, 10)
    cpu              = optional(string, "1")
    cpu_allocation   = optional(string, "request")
    optional_secrets = optional(list(string), [])
    outside          = optional(list(string), [])
    memory           = optional(string, "512Mi")
    env              = optional(map(string), {})
    smoke_expect     = optional(list(number), [])
    queue_admin      = optional(bool, false)
    iap              = optional(bool, false)
  }))

  validation {
    condition     = alltrue([for s in values(var.services) : contains(["always", "request"], s.cpu_allocation)])
    error_message = "cpu_allocation must be \"always\" (CPU between requests) or \"request\" (CPU only during requests)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : contains(["private", "public"], s.access)])
    error_message = "access must be \"private\" or \"public\"."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.timeout_seconds >= 1 && s.timeout_seconds <= 3600])
    error_message = "Cloud Run request timeouts are 1..3600 seconds."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.concurrency >= 1 && s.concurrency <= 1000 && s.max_instances >= 1])
    error_message = "concurrency must be 1..1000 and max_instances at least 1."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : can(regex("^functions/[a-z_]+\\.py$", s.source))])
    error_message = "source must be a module under functions/ (functions/<module>.py)."
  }
}

variable "service_accounts" {
  description = "Email of the service account each service runs as, keyed like var.services (one account per service)."
  type        = map(string)

  validation {
    condition     = length(distinct(values(var.service_accounts))) == length(var.service_accounts)
    error_message = "Each service runs as its own service account."
  }
}

variable "common_env" {
  description = "Environment variables (Settings fields, upper-cased) every service gets."
  type        = map(string)
  default     = {}
}

variable "service_env" {
  description = "Extra environment variables per service, keyed like var.services; they win over common_env."
  type        = map(map(string))
  default     = {}
}

variable "url_env" {
  description = "Per service, the environment variables that carry another service's URL: variable name -> service key (e.g. alert_relay = { API_BASE_URL = \"api\" })."
  type        = map(map(string))
  default     = {}
}

variable "secret_ids" {
  description = "Secret Manager secret id by the environment variable it feeds (every name in a service's `secrets`)."
  type        = map(string)
}

variable "invokers" {
  description = "Who may call which private service (roles/run.invoker), keyed by any stable name (\"<service>/<caller>\")."
  type = map(object({
    service = string
    member  = string
  }))
  default = {}

  validation {
    condition     = alltrue([for i in values(var.invokers) : contains(keys(var.services), i.service)])
    error_message = "Every invoker must name a service of var.services."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the services (prod: true)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels put on every resource of this module."
  type        = map(string)
  default     = {}
}

variable "placeholder_image" {
  description = <<-EOT
    Image every service is created with, so the first apply needs no build: Google's public Cloud Run
    sample, which answers every path with 200 (the probes pass). Cloud Build then deploys the code;
    Terraform ignores the image from there on.
  EOT
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}
