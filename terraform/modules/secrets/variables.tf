variable "project_id" {
  description = "Project that holds the secrets."
  type        = string
}

variable "prefix" {
  description = "Prefix of every resource name; secret ids are \"<prefix><name, lower-case, _ as ->\"."
  type        = string
}

variable "secrets" {
  description = <<-EOT
    Secrets keyed by the environment variable that carries them (a field of services/settings.py
    Settings, upper-cased). Values never appear in code: `generated` ones get a random value from
    Terraform (shared tokens nobody types, e.g. the alert relay token, which Terraform also needs for
    the monitoring webhook channel); the others take theirs from var.provided_values (an operator's
    sensitive Terraform variables), written write-only.
  EOT
  type = map(object({
    description = string
    generated   = optional(bool, false)
    length      = optional(number, 48)
  }))
}

variable "accessors" {
  description = "Who may read which secret, keyed by any stable name (\"<secret>/<workload>\"): the secret's key in var.secrets and an IAM member."
  type = map(object({
    secret = string
    member = string
  }))

  validation {
    condition     = alltrue([for a in values(var.accessors) : contains(keys(var.secrets), a.secret)])
    error_message = "Every accessor must name a secret declared in var.secrets."
  }
}

variable "labels" {
  description = "Labels put on every secret."
  type        = map(string)
  default     = {}
}

variable "provided_values" {
  description = "Value of every secret that is not generated, by its key in var.secrets (from the operator's sensitive variables)."
  type        = map(string)
  sensitive   = true
  default     = {}
}

variable "provided_versions" {
  description = "Version number of each provided value (write-only arguments are re-sent only when it changes): raise it to rotate."
  type        = map(number)
  default     = {}
}
