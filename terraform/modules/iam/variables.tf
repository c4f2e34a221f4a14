variable "project_id" {
  description = "Project that owns the service accounts and their project-level roles."
  type        = string
}

variable "prefix" {
  description = "Prefix of every resource name (e.g. \"jt-dev-\"); service account ids are \"<prefix><name>\"."
  type        = string
}

variable "service_accounts" {
  description = <<-EOT
    Service accounts keyed by short name (underscores become hyphens in the account id). Each runs
    one thing, so its roles are what that one thing needs. `project_roles` are granted on the
    project; resource-level roles (topics, secrets, services) are granted where the resource lives.
  EOT
  type = map(object({
    description   = string
    project_roles = optional(list(string), [])
  }))

  validation {
    condition = alltrue([
      for name in keys(var.service_accounts) : can(regex("^[a-z][a-z0-9-]{5,29}$", "${var.prefix}${replace(name, "_", "-")}"))
    ])
    error_message = "Every \"<prefix><name>\" must be a valid account id: 6-30 of [a-z0-9-], starting with a letter."
  }
}

variable "act_as" {
  description = "Accounts of this module allowed to deploy workloads that run as another of its accounts (roles/iam.serviceAccountUser), keyed by any stable name: `service_account` is acted as, `account` acts."
  type = map(object({
    service_account = string
    account         = string
  }))
  default = {}

  validation {
    condition = alltrue([
      for g in values(var.act_as) : contains(keys(var.service_accounts), g.service_account) && contains(keys(var.service_accounts), g.account)
    ])
    error_message = "Every act_as grant must name two service accounts declared in var.service_accounts."
  }
}
