variable "project_id" {
  description = "Project that owns the topics and subscriptions."
  type        = string
}

variable "prefix" {
  description = "Prefix of every topic and subscription name: \"<prefix><name>\" (settings.topic_prefix in the services)."
  type        = string
}

variable "topology_file" {
  description = <<-EOT
    Path of infra/topology.yaml, the one description of the Pub/Sub topology. This module creates
    exactly what that file lists (the local bootstrap, infra/bootstrap.py, reads the same file), so
    no topic or subscription is declared here by hand.
  EOT
  type        = string
}

variable "push_endpoints" {
  description = "URL of each entry point that receives pushes, keyed by the `push_to` names of the topology file."
  type        = map(string)
}

variable "push_audiences" {
  description = "OIDC audience of each push target (its Cloud Run custom audience), keyed like push_endpoints."
  type        = map(string)
}

variable "push_service_account" {
  description = "Identity Pub/Sub signs push requests as (OIDC), the only one granted run.invoker on the push targets."
  type = object({
    id    = string
    email = string
  })
}

variable "publishers" {
  description = "Who may publish where, keyed by any stable name (\"<topic>/<workload>\"): a topic of the topology file and an IAM member."
  type = map(object({
    topic  = string
    member = string
  }))
  default = {}
}

variable "labels" {
  description = "Labels put on every topic and subscription."
  type        = map(string)
  default     = {}
}

variable "queue_admins" {
  description = <<-EOT
    Workloads that pause and resume queues (the API's control plane), by short name -> IAM member.
    Pausing detaches a push subscription's endpoint and resuming re-attaches it, so they get
    roles/pubsub.editor on the push subscriptions only, and actAs on the push identity (re-attaching
    an OIDC push config requires it).
  EOT
  type        = map(string)
  default     = {}
}
