# One identity per role, each granted only what its code does. Storage roles
# are bucket-scoped; Firestore and Vertex AI have no finer grant than the
# project. Who may *invoke* each function is in functions.tf.

locals {
  service_accounts = {
    ingest    = "Pix Me ingest (on_upload runtime)"
    api       = "Pix Me API (generate, edit, sessions runtime)"
    cleanup   = "Pix Me cleanup (cleanup runtime)"
    trigger   = "Pix Me Eventarc trigger (delivers upload events)"
    scheduler = "Pix Me scheduler (calls cleanup)"
  }

  # storage.objectUser: read, write, list, delete objects; unlike objectAdmin
  # it cannot change object IAM, which uniform access makes pointless anyway.
  bucket_roles = {
    # Ingest reads the raw upload and deletes (or quarantines) a rejected one;
    # cleanup and the lifecycle rule delete the rest.
    ingest_uses_uploads = { bucket = "uploads", role = "roles/storage.objectUser", identity = "ingest" }
    # Ingest writes the normalized selfie; a retried event overwrites it.
    ingest_writes_assets = { bucket = "assets", role = "roles/storage.objectUser", identity = "ingest" }
    # The API reads selfies, writes avatars and signs read URLs for them.
    api_uses_assets = { bucket = "assets", role = "roles/storage.objectUser", identity = "api" }
    # Cleanup lists and deletes expired objects in both buckets.
    cleanup_uses_uploads = { bucket = "uploads", role = "roles/storage.objectUser", identity = "cleanup" }
    cleanup_uses_assets  = { bucket = "assets", role = "roles/storage.objectUser", identity = "cleanup" }
  }

  buckets = {
    uploads = google_storage_bucket.uploads.name
    assets  = google_storage_bucket.assets.name
  }

  project_roles = {
    ingest_datastore  = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["ingest"].email}" }
    api_datastore     = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["api"].email}" }
    cleanup_datastore = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["cleanup"].email}" }
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

# Signed URLs without a private key: the API signs through IAM signBlob as
# itself, which needs the token creator role on its own account and nothing wider.
resource "google_service_account_iam_member" "api_signs_as_itself" {
  service_account_id = google_service_account.sa["api"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.sa["api"].email}"
}
