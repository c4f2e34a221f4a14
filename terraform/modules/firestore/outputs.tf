output "database" {
  description = "Database name."
  value       = google_firestore_database.this.name
}

output "indexes" {
  description = "Composite indexes created, by \"<group>:<field>:<order>,...\"."
  value       = { for key, i in google_firestore_index.this : key => { collection = i.collection, query_scope = i.query_scope } }
}

output "ttl_fields" {
  description = "\"<collection>.<field>\" of every TTL policy."
  value       = sort([for key, f in google_firestore_field.this : "${f.collection}.${f.field}" if length(f.ttl_config) > 0])
}
