# What each function is (fixed by the code) and how big it is (tunable).
# Resources elsewhere iterate over local.functions; nothing repeats per function.

locals {
  firestore_location = coalesce(var.firestore_location, var.region)

  # identity: which runtime service account (iam.tf) the function runs as.
  # public:   allUsers may invoke it; the code verifies Firebase ID tokens.
  # ingress:  who may reach it at the network level. Eventarc and Cloud
  #           Scheduler in the same project count as internal.
  function_specs = {
    on_upload = {
      entry_point = "on_upload"
      description = "Normalizes a finalized selfie from the uploads bucket into the assets bucket."
      identity    = "ingest"
      trigger     = "storage"
      public      = false
      calls_model = false
      ingress     = "ALLOW_INTERNAL_ONLY"
    }
    generate = {
      entry_point = "generate"
      description = "Starts an avatar session: renders a selfie in a style with the image model."
      identity    = "api"
      trigger     = "https"
      public      = true
      calls_model = true
      ingress     = "ALLOW_ALL"
    }
    edit = {
      entry_point = "edit"
      description = "Adds a turn to an avatar session: edits the current image with the image model."
      identity    = "api"
      trigger     = "https"
      public      = true
      calls_model = true
      ingress     = "ALLOW_ALL"
    }
    sessions = {
      entry_point = "sessions"
      description = "Lists, reads and deletes a user's sessions and turns; reads an upload's status."
      identity    = "sessions"
      trigger     = "https"
      public      = true
      calls_model = false
      ingress     = "ALLOW_ALL"
    }
    uploads = {
      entry_point = "uploads"
      description = "Registers a selfie upload and returns a signed PUT URL for it; reports its status; deletes it with everything made from it."
      identity    = "uploads"
      trigger     = "https"
      public      = true
      calls_model = false
      ingress     = "ALLOW_ALL"
    }
    account = {
      entry_point = "account"
      description = "A user's remaining quotas, an export of everything stored for them (with signed URLs), and its deletion."
      identity    = "account"
      trigger     = "https"
      public      = true
      calls_model = false
      ingress     = "ALLOW_ALL"
    }
    cleanup = {
      entry_point = "cleanup"
      description = "Deletes expired sessions, uploads and their images; called by Cloud Scheduler."
      identity    = "cleanup"
      trigger     = "https"
      public      = false
      calls_model = false
      ingress     = "ALLOW_INTERNAL_ONLY"
    }
  }

  # Sizing, per function. min_instances 0 everywhere: nothing runs, or costs,
  # when idle. A concurrency above 1 needs a whole vCPU (the precondition in
  # functions.tf); below that Cloud Run serves one request at a time.
  #
  # generate, edit: a request spends 10-60 s waiting on the model and well
  # under a second of CPU (decoding the selfie, encoding the avatar), so one
  # vCPU serves several at once: concurrency 8 instead of one request per
  # third of a vCPU (the 512Mi "auto" size). Each request holds a few decoded
  # images (a 1536 px RGBA picture is ~9 MiB), hence 1Gi for 8 of them plus
  # the Python runtime and client libraries (~200 MiB).
  #   max_instances is a capacity bound derived from the daily budget (the
  #   spend bound is the budget itself, enforced in code): enough instances
  #   for the whole day's budget to be spent within budget_peak_window_s at
  #   the longest model call (model_call_s), i.e.
  #     ceil(daily_budget * model_call_s / budget_peak_window_s / concurrency)
  #   = ceil(5000 * 60 / 3600 / 8) = 11 with the defaults, between 1 and 100.
  #   Each of generate and edit gets it: either may spend the whole budget.
  # sessions, uploads: short Firestore reads and writes plus an IAM signBlob
  # call per signed URL, all network waits: one vCPU, 20 requests at once.
  # account: export signs one URL per image (an IAM call each), DELETE works
  # through up to 1000 sessions and 1000 uploads (it answers complete=false
  # past that, and a retry resumes): long, network-bound, rarely called, so
  # 10 at once on one vCPU and a smaller instance bound.
  # on_upload: decodes a full-size phone photo in memory, CPU-bound: 1Gi and
  # a whole vCPU for one upload at a time.
  # cleanup: one run a day, alone: one instance, one request.
  #
  # Timeouts: generate and edit 120 s, above the model's deadline (90 s by
  # default; a precondition in functions.tf keeps it below), so the code
  # always answers before the platform cuts the request. sessions 30 s and
  # uploads 60 s: a page of reads and signatures, or one upload's deletion.
  # account 300 s: a bounded slice of an export or deletion (then
  # complete=false). on_upload 180 s: one decode, face check and write, with
  # room for retries of storage calls. cleanup 900 s: its bounded batches
  # (Cloud Scheduler waits at most 30 minutes).
  # The fixed instance bounds (20, 10, 1) are capacity for bursts of light
  # requests: 20 instances x 20 requests for sessions and uploads, 20 uploads
  # ingested at once, 10 x 10 account calls; none of them spends budget.
  model_call_s         = 60
  budget_peak_window_s = 3600
  model_concurrency    = 8
  model_max_instances  = max(1, min(100, ceil(var.app.daily_budget * local.model_call_s / local.budget_peak_window_s / local.model_concurrency)))

  function_defaults = {
    on_upload = { memory = "1Gi", cpu = "1", timeout_s = 180, min_instances = 0, max_instances = 20, concurrency = 1 }
    generate  = { memory = "1Gi", cpu = "1", timeout_s = 120, min_instances = 0, max_instances = local.model_max_instances, concurrency = local.model_concurrency }
    edit      = { memory = "1Gi", cpu = "1", timeout_s = 120, min_instances = 0, max_instances = local.model_max_instances, concurrency = local.model_concurrency }
    sessions  = { memory = "512Mi", cpu = "1", timeout_s = 30, min_instances = 0, max_instances = 20, concurrency = 20 }
    uploads   = { memory = "512Mi", cpu = "1", timeout_s = 60, min_instances = 0, max_instances = 20, concurrency = 20 }
    account   = { memory = "512Mi", cpu = "1", timeout_s = 300, min_instances = 0, max_instances = 10, concurrency = 10 }
    cleanup   = { memory = "512Mi", cpu = null, timeout_s = 900, min_instances = 0, max_instances = 1, concurrency = 1 }
  }

  functions = {
    for name, spec in local.function_specs : name => merge(
      spec,
      local.function_defaults[name],
      { for key, value in try(var.functions[name], {}) : key => value if value != null },
    )
  }

  # PIXME_REQUEST_STALE_S: a generate or edit still marked running (its
  # Idempotency-Key, its in-flight slot) after this was killed, since the
  # platform ends every request at its function's timeout; a retry then takes
  # its key over. Derived from the timeouts, so raising one keeps it safe:
  # the longest of the model functions' (they share a user's in-flight
  # slots), plus a margin for clocks that differ between instances.
  request_stale_s = max([for f in values(local.functions) : f.timeout_s if f.calls_model]...) + 60

  # Settings every function reads (config.py reads them all at start).
  common_env = {
    GOOGLE_CLOUD_PROJECT      = var.project_id
    GOOGLE_GENAI_USE_VERTEXAI = "true"
    GOOGLE_CLOUD_LOCATION     = var.app.vertex_location
    PIXME_UPLOADS_BUCKET      = google_storage_bucket.uploads.name
    PIXME_ASSETS_BUCKET       = google_storage_bucket.assets.name
    PIXME_MODEL               = var.app.model
    PIXME_MODELS              = var.app.models
    PIXME_RETENTION_DAYS      = tostring(var.app.retention_days)
    PIXME_URL_TTL_S           = tostring(var.app.url_ttl_s)
    PIXME_MODEL_TIMEOUT_S     = tostring(var.app.model_timeout_s)
    PIXME_MODEL_DEADLINE_S    = tostring(var.app.model_deadline_s)
    PIXME_MAX_EVENT_AGE_S     = tostring(var.app.max_event_age_s)
  }

  # Settings several functions use, by concern; function_env_groups says who
  # gets which. A function that reports a limit gets it too, so what
  # account's /usage says is what generate, edit and uploads enforce.
  shared_env = {
    # Every function that verifies a Firebase ID token (web.caller): the guest
    # policy, and App Check, whose tokens name the project by number.
    caller = {
      PIXME_ANONYMOUS      = var.app.anonymous
      PIXME_APP_CHECK      = var.app.app_check
      PIXME_PROJECT_NUMBER = data.google_project.this.number
    }
    # Per-user daily quotas (cost units) and the cap on model calls in flight.
    quotas = {
      PIXME_DAILY_GENERATIONS           = tostring(var.app.daily_generations)
      PIXME_DAILY_EDITS                 = tostring(var.app.daily_edits)
      PIXME_ANONYMOUS_DAILY_GENERATIONS = tostring(var.app.anonymous_daily_generations)
      PIXME_ANONYMOUS_DAILY_EDITS       = tostring(var.app.anonymous_daily_edits)
      PIXME_USER_MAX_IN_FLIGHT          = tostring(var.app.user_max_in_flight)
    }
    # The project's daily budget, the kill switch: Firestore config/budget
    # overrides it at run time (README, "Budget kill switch").
    budget = {
      PIXME_DAILY_BUDGET   = tostring(var.app.daily_budget)
      PIXME_BUDGET_CACHE_S = tostring(var.app.budget_cache_s)
    }
    upload_limits = {
      PIXME_DAILY_UPLOADS       = tostring(var.app.daily_uploads)
      PIXME_MAX_PENDING_UPLOADS = tostring(var.app.max_pending_uploads)
    }
    # The largest upload: uploads signs no PUT URL for more, on_upload
    # refuses more. Both must read the same number, so it is set here once.
    upload_size = {
      PIXME_MAX_UPLOAD_BYTES = tostring(var.app.max_upload_bytes)
    }
    # The longest prompt (generate) or instruction (edit) accepted.
    prompts = {
      PIXME_MAX_TEXT_CHARS = tostring(var.app.max_text_chars)
    }
    # When a model call's request counts as dead (local.request_stale_s).
    model_requests = {
      PIXME_REQUEST_STALE_S = tostring(local.request_stale_s)
    }
  }

  function_env_groups = {
    on_upload = ["upload_size"]
    generate  = ["caller", "quotas", "budget", "prompts", "model_requests"]
    edit      = ["caller", "quotas", "budget", "prompts", "model_requests"]
    sessions  = ["caller"]
    uploads   = ["caller", "upload_limits", "upload_size"]
    account   = ["caller", "quotas", "upload_limits"]
    cleanup   = []
  }

  # Settings only one function uses. A function that signs URLs signs as its
  # own runtime account, the only one it holds token creator on (iam.tf).
  function_env_extra = {
    on_upload = {
      # Ingest policies (README, Settings): the code's defaults, written out.
      PIXME_NO_FACE            = "reject"
      PIXME_MULTIPLE_FACES     = "reject"
      PIXME_REJECTED_ORIGINALS = "delete"
      PIXME_FACE_MIN_SCORE     = tostring(var.app.face_min_score)
      PIXME_SECOND_FACE_RATIO  = tostring(var.app.second_face_ratio)
      # Decoding limits: pixels before decoding (a decompression bomb is
      # refused unread), and the longest side of the normalized selfie.
      PIXME_MAX_UPLOAD_PIXELS = tostring(var.app.max_upload_pixels)
      PIXME_MAX_SIDE          = tostring(var.app.max_side)
    }
    generate = { PIXME_SIGNING_SERVICE_ACCOUNT = google_service_account.sa["api"].email }
    edit     = { PIXME_SIGNING_SERVICE_ACCOUNT = google_service_account.sa["api"].email }
    sessions = { PIXME_SIGNING_SERVICE_ACCOUNT = google_service_account.sa["sessions"].email }
    uploads = {
      PIXME_SIGNING_SERVICE_ACCOUNT = google_service_account.sa["uploads"].email
      PIXME_UPLOAD_URL_TTL_S        = tostring(var.app.upload_url_ttl_s)
    }
    account = { PIXME_SIGNING_SERVICE_ACCOUNT = google_service_account.sa["account"].email }
    cleanup = {}
  }

  function_env = {
    for name in keys(local.function_specs) : name => merge(
      local.common_env,
      merge([for group in local.function_env_groups[name] : local.shared_env[group]]...),
      local.function_env_extra[name],
    )
  }

  # Accounts that sign URLs through IAM signBlob, each as itself (iam.tf).
  signing_identities = toset(["api", "sessions", "uploads", "account"])

  required_apis = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    # Firebase: the project is a Firebase project (Firebase Auth issues the
    # app's ID tokens); the stack links its buckets and releases security rules.
    "firebase.googleapis.com",
    "firebaserules.googleapis.com",
    "firebasestorage.googleapis.com",
    # What the app calls: Firebase Authentication (Identity Toolkit: sign-in,
    # the ID tokens the functions verify) and App Check (its tokens, when
    # app.app_check is monitor or enforce).
    "identitytoolkit.googleapis.com",
    "firebaseappcheck.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    # The log-based metrics and alert policies (monitoring.tf), and the
    # billing budget (budget.tf).
    "billingbudgets.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ]
}

# The project number, for App Check (its tokens' audience is projects/NUMBER).
data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each = toset(local.required_apis)

  project = var.project_id
  service = each.value

  # Destroying this stack must not switch APIs off for anything else in the project.
  disable_on_destroy         = false
  disable_dependent_services = false
}
