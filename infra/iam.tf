# One identity per role, each granted only what its code does. Storage roles
# are bucket-scoped; Firestore and Vertex AI have no finer grant than the
# project. Who may *invoke* each function is in functions.tf.

locals {
  service_accounts = {
    ingest    = "Pix Me ingest (on_upload runtime)"
    api       = "Pix Me API (generate, edit runtime)"
    sessions  = "Pix Me sessions (sessions runtime: reads and deletes sessions)"
    uploads   = "Pix Me uploads (uploads runtime: signs upload URLs, deletes uploads)"
    account   = "Pix Me account (account runtime: usage, export, deletes an account)"
    cleanup   = "Pix Me cleanup (cleanup runtime)"
    trigger   = "Pix Me Eventarc trigger (delivers upload events)"
    scheduler = "Pix Me scheduler (calls cleanup)"
    # Cloud Build builds each function's container as this account
    # (functions.tf build_config), not the project's default build account:
    # projects made since mid-2024 give that default no rights to build, and
    # where it has them they are far wider (project editor on old projects).
    build = "Pix Me build (Cloud Build builds the functions)"
  }

  # Object roles, granted on one bucket each, never on the project:
  #   storage.objectViewer   get and list objects
  #   storage.objectCreator  create objects (no read, no overwrite, no delete)
  #   storage.objectUser     get, list, create, overwrite, delete; unlike
  #                          objectAdmin it cannot change object IAM
  #   object_deleter         delete only (custom role below): Cloud Storage has
  #                          no predefined role that deletes without also writing
  #   object_lister          list only (custom role below): names and metadata,
  #                          not contents; objectViewer would also read them
  object_deleter = google_project_iam_custom_role.object_deleter.name
  object_lister  = google_project_iam_custom_role.object_lister.name

  bucket_roles = {
    # Ingest reads the raw upload, then deletes it: after a successful ingest,
    # when it is rejected, and when no pending upload document names it. It
    # never writes there, so it cannot trigger itself.
    ingest_reads_uploads   = { bucket = "uploads", role = "roles/storage.objectViewer", identity = "ingest" }
    ingest_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "ingest" }
    # Ingest writes the normalized selfie, its face crop and a quarantined
    # copy; a retried event overwrites them (an overwrite needs delete too), and
    # a failed ingest removes them. It never reads them. List as well: without
    # storage.objects.list Cloud Storage may answer 403 rather than 404 for an
    # object that is not there, and removing what is already gone must succeed.
    ingest_writes_assets  = { bucket = "assets", role = "roles/storage.objectCreator", identity = "ingest" }
    ingest_deletes_assets = { bucket = "assets", role = local.object_deleter, identity = "ingest" }
    ingest_lists_assets   = { bucket = "assets", role = local.object_lister, identity = "ingest" }
    # The API (generate, edit) reads selfies and base images, writes avatars,
    # signs read URLs for them, and takes an avatar back when its turn was not
    # recorded. Nothing patches metadata, so not objectUser.
    api_reads_assets   = { bucket = "assets", role = "roles/storage.objectViewer", identity = "api" }
    api_writes_assets  = { bucket = "assets", role = "roles/storage.objectCreator", identity = "api" }
    api_deletes_assets = { bucket = "assets", role = local.object_deleter, identity = "api" }
    # sessions signs read URLs for avatars (a signed URL acts with the signer's
    # rights, so it needs get), and DELETE /{session_id} removes the session's
    # avatars/{uid}/{session_id}/ (listed by prefix). It has its own account
    # rather than the API's so that this is all it can do: objectUser would
    # also let it write.
    sessions_reads_assets   = { bucket = "assets", role = "roles/storage.objectViewer", identity = "sessions" }
    sessions_deletes_assets = { bucket = "assets", role = local.object_deleter, identity = "sessions" }
    # The app's PUT goes through a URL the uploads function signs, and a signed
    # URL acts with the signer's permissions: the signer must be able to
    # create the object. The URL is create-only (if-generation-match 0), so
    # creating is all it needs; no read.
    uploads_creates_uploads = { bucket = "uploads", role = "roles/storage.objectCreator", identity = "uploads" }
    # DELETE of an upload removes its original (if ingest has not already).
    uploads_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "uploads" }
    # ... and its normalized picture, face crop, quarantined copy, and the
    # avatars of the sessions made from it (listed by prefix). Nothing written.
    uploads_lists_assets   = { bucket = "assets", role = local.object_lister, identity = "uploads" }
    uploads_deletes_assets = { bucket = "assets", role = local.object_deleter, identity = "uploads" }
    # account's DELETE / removes every object of the caller: by name and by
    # prefix (uploads/{uid}/ here), so list and delete; it never reads an
    # original, so no get.
    account_lists_uploads   = { bucket = "uploads", role = local.object_lister, identity = "account" }
    account_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "account" }
    # ... and selfies/, quarantine/ and avatars/ of the caller here; GET
    # /export signs read URLs for them, which needs get. Nothing written.
    account_reads_assets   = { bucket = "assets", role = "roles/storage.objectViewer", identity = "account" }
    account_deletes_assets = { bucket = "assets", role = local.object_deleter, identity = "account" }
    # Cleanup deletes expired objects in both buckets (by name and by prefix);
    # it reads and writes nothing. List on uploads too, where it deletes by
    # name only: originals are often gone already, and without list Cloud
    # Storage may answer 403 rather than 404 for them.
    cleanup_lists_uploads   = { bucket = "uploads", role = local.object_lister, identity = "cleanup" }
    cleanup_deletes_uploads = { bucket = "uploads", role = local.object_deleter, identity = "cleanup" }
    cleanup_lists_assets    = { bucket = "assets", role = local.object_lister, identity = "cleanup" }
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
    # Sessions and turns (read, delete) and upload status.
    sessions_datastore = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["sessions"].email}" }
    # Every upload, session, turn, idempotency and usage document of the caller (read, delete).
    account_datastore = { role = "roles/datastore.user", member = "serviceAccount:${google_service_account.sa["account"].email}" }
    # Gemini through Vertex AI: generateContent only (custom role below), not
    # aiplatform.user, which also creates and deletes endpoints, datasets,
    # jobs and models. Only generate and edit (the api identity) call it.
    api_vertex = { role = google_project_iam_custom_role.model_caller.name, member = "serviceAccount:${google_service_account.sa["api"].email}" }
    # The functions' build (Cloud Build as pixme-build): write its logs, and
    # push the image to the gcf-artifacts repository, which Cloud Functions
    # creates itself at the first deploy, so it cannot be granted on the
    # repository beforehand. Reading the source is granted on its bucket only.
    build_writes_logs   = { role = "roles/logging.logWriter", member = "serviceAccount:${google_service_account.sa["build"].email}" }
    build_pushes_images = { role = "roles/artifactregistry.writer", member = "serviceAccount:${google_service_account.sa["build"].email}" }
    # Eventarc's service agent runs the trigger (its Pub/Sub subscription and
    # topic); the agent is created explicitly below, its role granted here
    # so a fresh project's first apply does not race the agent's first use.
    eventarc_agent = { role = "roles/eventarc.serviceAgent", member = "serviceAccount:${google_project_service_identity.eventarc.email}" }
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
  #checkov:skip=CKV_GCP_49:Flags eventarc_agent: roles/eventarc.serviceAgent granted to the Eventarc service agent itself, as Eventarc requires; no user or runtime account gets a role that manages or impersonates service accounts.
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

# Calling Gemini on Vertex AI: generateContent (and streamGenerateContent)
# on publishers/google/models/* checks aiplatform.endpoints.predict, the one
# permission Google's generative AI access-control page lists for "make
# prompt requests". Granted only to the api identity (generate, edit).
resource "google_project_iam_custom_role" "model_caller" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_modelCaller"
  title       = "Pix Me model caller"
  description = "Sends prompt requests (generateContent) to Vertex AI models, nothing else. Granted to the Pix Me API identity only."
  permissions = ["aiplatform.endpoints.predict"]

  depends_on = [google_project_service.apis]
}

# Defined in the project, granted only on single buckets, above.
resource "google_project_iam_custom_role" "object_lister" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_objectLister"
  title       = "Pix Me object lister"
  description = "Lists Cloud Storage objects (names and metadata, not contents), nothing else. Granted per bucket by the Pix Me stack."
  permissions = ["storage.objects.list"]

  depends_on = [google_project_service.apis]
}

# Signed URLs without a private key: the API, sessions and account (read
# URLs) and the uploads function (PUT URLs) sign through IAM signBlob, each as
# itself, which needs the token creator role on its own account and nothing wider.
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

# Vertex AI reads the user images it is sent by gs:// reference (the face
# crop, reference avatars) with its own service agent, not the caller's
# credentials: read-only, on the assets bucket only. Created explicitly so the
# grant does not wait for the agent to appear at the first model call.
resource "google_project_service_identity" "aiplatform" {
  provider = google-beta
  project  = var.project_id
  service  = "aiplatform.googleapis.com"

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "vertex_reads_assets" {
  bucket = google_storage_bucket.assets.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_project_service_identity.aiplatform.email}"
}

# The build reads the zipped source it builds from, on the source bucket only
# (no project-level storage role).
resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.sa["build"].email}"
}

# Cloud Functions copies the deployed source into its own bucket,
# gcf-v2-sources-PROJECT_NUMBER-REGION (or ...-REGION-<CMEK hash>), and the
# build reads it from there. Cloud Run's build-service-account page documents
# Cloud Run Builder (roles/run.builder) on the project for this account:
# artifactregistry.repositories.{upload,download,delete}Artifacts,
# logging.logEntries.create, source.repos.get and storage.objects.get. Logs
# and Artifact Registry are granted above (project_roles: build_writes_logs,
# build_pushes_images; Artifact Registry Writer uploads and downloads but
# does not delete images, and no source repository is used);
# storage.objects.get on the whole project would let the build read every
# selfie, so the read is granted here with a condition that limits it to
# that one bucket. The bucket only appears at the first deploy, so it cannot
# be granted on the bucket itself beforehand.
resource "google_project_iam_member" "build_reads_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.sa["build"].email}"

  condition {
    title       = "gcf-v2-sources only"
    description = "The bucket Cloud Functions copies deployed source into; nothing else in the project."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

# The first apply on a fresh project used to fail until a second one: the
# Eventarc and Pub/Sub service agents only appear when those services first
# act, and the trigger cannot be created before they exist and hold their
# roles. Creating them here, and making on_upload's trigger depend on them
# and on their grants (functions.tf), lets one apply do it all.
resource "google_project_service_identity" "eventarc" {
  provider = google-beta
  project  = var.project_id
  service  = "eventarc.googleapis.com"

  depends_on = [google_project_service.apis]
}

resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

# Eventarc delivers through an authenticated Pub/Sub push subscription whose
# OIDC token is minted for the trigger account by the Pub/Sub service agent.
# Projects whose agent predates April 2021 lack that right; it is granted
# here on the trigger account only, never on the project.
resource "google_service_account_iam_member" "pubsub_agent_signs_as_trigger" {
  service_account_id = google_service_account.sa["trigger"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_project_service_identity.pubsub.email}"
}
