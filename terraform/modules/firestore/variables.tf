variable "project_id" {
  description = "Project of the database."
  type        = string
}

variable "location_id" {
  description = "Firestore location (region or multi-region, e.g. \"eur3\", \"europe-west1\")."
  type        = string
}

variable "database_name" {
  description = "Database id; \"(default)\" unless settings.firestore_database says otherwise."
  type        = string
  default     = "(default)"
}

variable "collection_prefix" {
  description = "settings.collection_prefix: prepended to top-level collection names (not to subcollections)."
  type        = string
  default     = ""
}

variable "subcollections" {
  description = "Collection groups that live under a document (jobs/{id}/events) and so carry no prefix."
  type        = list(string)
  default     = ["events"]
}

variable "indexes_file" {
  description = <<-EOT
    Path of infra/firestore.indexes.json (the Firebase CLI's format): `indexes` become composite
    indexes, `fieldOverrides` become field settings (`"ttl": true` a TTL policy, `"indexes": []`
    no single-field indexes, as Google recommends for TTL timestamps).
  EOT
  type        = string
}

variable "point_in_time_recovery" {
  description = "Keep 7 days of point-in-time recovery (prod: true)."
  type        = bool
  default     = true
}

variable "delete_protection" {
  description = "Refuse to delete the database (prod: true)."
  type        = bool
  default     = true
}
