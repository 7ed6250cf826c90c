resource "google_firestore_database" "default" {
  count = var.create_firestore_database ? 1 : 0

  name        = "(default)"
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  delete_protection_state = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # Destroying the stack forgets the database rather than deleting user data.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.apis]
}

# TTL is a safety net: Firestore deletes expired documents within about a day,
# the code checks expiry itself, and the cleanup function deletes the images.
# index_config is left unset so expires_at keeps its single-field indexes: the
# cleanup function queries uploads and sessions by expires_at. usage (per-user
# counters) and budget (the day's spend counters) expire two days after their
# last write, idempotency keys a day after their request.
resource "google_firestore_field" "expires_at_ttl" {
  for_each = toset(["uploads", "sessions", "turns", "idempotency", "usage", "budget"])

  database   = "(default)"
  collection = each.key
  field      = "expires_at"

  ttl_config {}

  depends_on = [google_firestore_database.default, google_project_service.apis]
}

# `sessions` GET / lists a caller's sessions, newest first: an equality on
# owner plus an order on updated_at needs this composite index.
resource "google_firestore_index" "sessions_by_owner" {
  project    = var.project_id
  database   = "(default)"
  collection = "sessions"

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updated_at"
    order      = "DESCENDING"
  }

  depends_on = [google_firestore_database.default, google_project_service.apis]
}
