# One identity per role, each granted only what its code does. Storage roles
# are bucket-scoped; Firestore and Vertex AI have no finer grant than the
# project. Who may *invoke* each function is in functions.tf.

locals {
  service_accounts = {
    ingest    = "Pix Me ingest (on_upload runtime)"
    api       = "Pix Me API (generate, edit, sessions runtime)"
    uploads   = "Pix Me uploads (uploads runtime: signs upload URLs, deletes uploads)"
    cleanup   = "Pix Me cleanup (cleanup runtime)"
    trigger   = "Pix Me Eventarc trigger (delivers upload events)"
    scheduler = "Pix Me scheduler (calls cleanup)"
  }

  # Object roles, granted on one bucket each, never on the project:
  #   storage.objectViewer   get and list objects
  #   storage.objectCreator  create objects (no read, no overwrite, no delete)
  #   storage.objectUser     get, list, create, overwrite, delete; unlike
  #                          objectAdmin it cannot change object IAM
  #   object_deleter         delete only (custom role below): Cloud Storage has
  #                          no predefined role that deletes without also writing
  object_deleter = google_project_iam_custom_role.object_deleter.name

  bucket_roles = {
    # Ingest reads the raw upload, then deletes it: after a successful ingest,
    # when it is rejected, and when no pending upload document names it. It
    # never writes there, so it cannot trigger itself.
    ingest_reads_uploads   = { bucket = "uploads", role = "roles/storage.objectViewer", identity = "ingest" }
    ingest_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "ingest" }
    # Ingest writes the normalized selfie, its face crop and a quarantined
    # copy; a retried event overwrites them, and a failed ingest removes them.
    ingest_writes_assets = { bucket = "assets", role = "roles/storage.objectUser", identity = "ingest" }
    # The API reads selfies, writes avatars and signs read URLs for them.
    api_uses_assets = { bucket = "assets", role = "roles/storage.objectUser", identity = "api" }
    # The app's PUT goes through a URL the uploads function signs, and a signed
    # URL acts with the signer's permissions: the signer must be able to
    # create the object. The URL is create-only (if-generation-match 0), so
    # creating is all it needs; no read.
    uploads_creates_uploads = { bucket = "uploads", role = "roles/storage.objectCreator", identity = "uploads" }
    # DELETE of an upload removes its original (if ingest has not already).
    uploads_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "uploads" }
    # ... and its normalized picture, face crop, quarantined copy, and the
    # avatars of the sessions made from it (listed by prefix). Nothing written.
    uploads_lists_assets   = { bucket = "assets", role = "roles/storage.objectViewer", identity = "uploads" }
    uploads_deletes_assets = { bucket = "assets", role = local.object_deleter, identity = "uploads" }
    # Cleanup lists and deletes expired objects in both buckets; it writes nothing.
    cleanup_lists_uploads   = { bucket = "uploads", role = "roles/storage.objectViewer", identity = "cleanup" }
    cleanup_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "cleanup" }
    cleanup_lists_assets    = { bucket = "assets", role = "roles/storage.objectViewer", identity = "cleanup" }
    cleanup_deletes_assets  = { bucket = "assets", role = local.object_deleter, identity = "cleanup" }
  }

  buckets = {
    uploads = google_storage_bucket.uploads.name
    assets  = google_storage_bucket.assets.name
  }

  project_roles = {
    ingest_datastore  = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["ingest"].email}" }
    api_datastore     = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["api"].email}" }
    cleanup_datastore = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["cleanup"].email}" }
    # Upload documents (pending, status, delete) and the sessions made from them.
    uploads_datastore = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["uploads"].email}" }
    # Gemini through Vertex AI.
    api_vertex = { role = "roles/aiplatform.user", member = "serviceAccount:${google_service_account.sa["api"].email}" }
    # Eventarc triggers need their service account to receive events.
    trigger_receives_events = { role = "roles/eventarc.eventReceiver", member = "serviceAccount:${google_service_account.sa["trigger"].email}" }
    # Cloud Storage publishes object events through Pub/Sub as its service agent.
    gcs_agent_publishes = { role = "roles/pubsub.publisher", member = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}" }
  }
}

resource "google_service_account" "sa" {
  for_each = local.service_accounts

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value

  depends_on = [google_project_service.apis]
}

data "google_storage_project_service_account" "gcs" {
  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "project" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_storage_bucket_iam_member" "buckets" {
  for_each = local.bucket_roles

  bucket = local.buckets[each.value.bucket]
  role   = each.value.role
  member = "serviceAccount:${google_service_account.sa[each.value.identity].email}"
}

# Defined in the project (custom roles cannot be defined on a bucket) but only
# ever granted on single buckets, above.
resource "google_project_iam_custom_role" "object_deleter" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_objectDeleter"
  title       = "Pix Me object deleter"
  description = "Deletes Cloud Storage objects, nothing else. Granted per bucket by the Pix Me stack."
  permissions = ["storage.objects.delete"]

  depends_on = [google_project_service.apis]
}

# Signed URLs without a private key: the API (read URLs) and the uploads
# function (PUT URLs) sign through IAM signBlob, each as itself, which needs
# the token creator role on its own account and nothing wider.
resource "google_service_account_iam_member" "signs_as_itself" {
  for_each = local.signing_identities

  service_account_id = google_service_account.sa[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.sa[each.key].email}"
}

# The API's grant used to be a single resource; keep it rather than recreate it.
moved {
  from = google_service_account_iam_member.api_signs_as_itself
  to   = google_service_account_iam_member.signs_as_itself["api"]
}
