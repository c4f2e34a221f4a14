locals {
  spec = jsondecode(file(var.indexes_file))

  collection = { for group in distinct(concat(
    [for i in local.spec.indexes : i.collectionGroup],
    [for o in try(local.spec.fieldOverrides, []) : o.collectionGroup],
  )) : group => contains(var.subcollections, group) ? group : "${var.collection_prefix}${group}" }

  # Keyed by what the index is, so reordering the file changes nothing.
  indexes = {
    for i in local.spec.indexes :
    "${i.collectionGroup}:${join(",", [for f in i.fields : "${f.fieldPath}:${try(f.order, f.arrayConfig)}"])}" => i
  }
  field_overrides = { for o in try(local.spec.fieldOverrides, []) : "${o.collectionGroup}.${o.fieldPath}" => o }
}

resource "google_firestore_database" "this" {
  project                           = var.project_id
  name                              = var.database_name
  location_id                       = var.location_id
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = var.point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.delete_protection ? "ABANDON" : "DELETE"
}

resource "google_firestore_index" "this" {
  for_each = local.indexes

  project     = var.project_id
  database    = google_firestore_database.this.name
  collection  = local.collection[each.value.collectionGroup]
  query_scope = try(each.value.queryScope, "COLLECTION")

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = try(fields.value.order, null)
      array_config = try(fields.value.arrayConfig, null)
    }
  }
}

resource "google_firestore_field" "this" {
  for_each = local.field_overrides

  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = local.collection[each.value.collectionGroup]
  field      = each.value.fieldPath

  dynamic "ttl_config" {
    for_each = try(each.value.ttl, false) ? [1] : []
    content {}
  }

  # An empty index_config turns single-field indexing off for the field.
  index_config {
    dynamic "indexes" {
      for_each = try(each.value.indexes, [])
      content {
        query_scope  = try(indexes.value.queryScope, "COLLECTION")
        order        = try(indexes.value.order, null)
        array_config = try(indexes.value.arrayConfig, null)
      }
    }
  }
}
