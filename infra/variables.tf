variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits or hyphens), not a name or number."
  }
}

variable "region" {
  description = "Region of the functions, the buckets, the Eventarc trigger and the scheduler job. The trigger must be in the uploads bucket's region, so they share this one."
  type        = string
  default     = "europe-west1"

  validation {
    # Region numbers go past 9 (europe-west10, europe-west12) and start at 1
    # (us-east5, me-central2): one or more digits, no leading zero. Zones
    # (europe-west1-b) and multi-regions (eu, nam4 is not a region) stay out.
    condition     = can(regex("^[a-z]+-[a-z]+[1-9][0-9]*$", var.region))
    error_message = "region must be a single region such as europe-west1; a multi-region bucket would need a different trigger region."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database (a region or a multi-region such as eur3). Defaults to region."
  type        = string
  default     = null

  validation {
    condition     = var.firestore_location == null ? true : can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "firestore_location must be a Firestore location id such as europe-west1 or eur3."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, service accounts, buckets, scheduler job, the custom IAM role)."
  type        = string
  default     = "pixme"

  validation {
    # Service account ids are at most 30 characters: prefix + "-scheduler" must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-16 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Extra labels put on every resource that supports them."
  type        = map(string)
  default     = {}
}

variable "app" {
  description = "Application settings passed to the functions as PIXME_* environment variables (read by functions/pixme/config.py; main.tf says which function gets which). Defaults are the code's."
  type = object({
    model            = optional(string, "gemini-nano-banana-2.1")
    models           = optional(string, "flash=gemini-nano-banana-2.1|gemini-3.1-flash-image,pro=gemini-3-pro-image;cost=4")
    retention_days   = optional(number, 30)
    url_ttl_s        = optional(number, 900)
    model_timeout_s  = optional(number, 60)
    model_deadline_s = optional(number, 90)
    max_event_age_s  = optional(number, 3600)
    vertex_location  = optional(string, "global")
    # uploads: lifetime of the signed PUT URL, uploads a user may start per
    # UTC day, and unfinished uploads a user may have at once.
    upload_url_ttl_s    = optional(number, 600)
    daily_uploads       = optional(number, 20)
    max_pending_uploads = optional(number, 3)
    # on_upload: face detector score (0-100) from which a candidate counts, and
    # how wide, relative to the largest face, another must be to count as a second.
    face_min_score    = optional(number, 70)
    second_face_ratio = optional(number, 0.5)
    # generate, edit (and account's /usage): per-user daily quotas in cost
    # units (a model alias's cost=N; a Pro image may count 4), for signed-in
    # and anonymous users, and the model calls one user may have in flight.
    # A quota of 0 turns that kind off for the tier.
    daily_generations           = optional(number, 20)
    daily_edits                 = optional(number, 100)
    anonymous_daily_generations = optional(number, 3)
    anonymous_daily_edits       = optional(number, 15)
    user_max_in_flight          = optional(number, 2)
    # generate, edit: the project's daily budget in cost units (0 stops all
    # generation), and how long a function caches the run-time override in
    # Firestore config/budget (README, "Budget kill switch").
    daily_budget   = optional(number, 5000)
    budget_cache_s = optional(number, 30)
    # Every function that checks Firebase ID tokens: whether anonymous
    # (guest) users are let in, and App Check (off, monitor: verify and log,
    # enforce: refuse requests without a valid token).
    anonymous = optional(string, "allow")
    app_check = optional(string, "off")
    # Ingest and prompt limits (functions/pixme/config.py Settings): the
    # largest upload in bytes (on_upload refuses it, uploads signs no URL
    # for more), its pixel count and the longest side it is normalized to
    # (on_upload), and the longest prompt or edit instruction (generate, edit).
    max_upload_bytes  = optional(number, 41943040)
    max_upload_pixels = optional(number, 50000000)
    max_side          = optional(number, 1536)
    max_text_chars    = optional(number, 500)
  })
  default = {}

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.app.model))
    error_message = "app.model must be a model id such as gemini-3.1-flash-image."
  }

  validation {
    # Each entry: alias=model-id, then optionally ;cost=N (N >= 1, what one
    # image counts against quotas and budget) and ;requires=claim:value (a
    # custom claim the caller's token must carry), as config.py parses them.
    # A model id may be followed by |fallback-id entries (tried in order when
    # the first is unavailable): the default and deploy.tfvars use one, so
    # without them the default itself would fail this check.
    condition = var.app.models == "" ? true : alltrue([
      for entry in split(",", var.app.models) :
      can(regex("^[a-z0-9_-]+=[A-Za-z0-9._-]+(\\|[A-Za-z0-9._-]+)*(;cost=[1-9][0-9]*|;requires=[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+)*$", entry))
    ])
    error_message = "app.models must be a comma-separated allowlist of alias=model-id entries (model-id optionally followed by |fallback-id), each optionally followed by ;cost=N and ;requires=claim:value, e.g. flash=gemini-3.1-flash-image,pro=gemini-3-pro-image;cost=4;requires=plan:pro."
  }

  validation {
    condition     = floor(var.app.retention_days) == var.app.retention_days && var.app.retention_days >= 1 && var.app.retention_days <= 365
    error_message = "app.retention_days must be a whole number of days between 1 and 365."
  }

  validation {
    # V4 signed URLs cannot live longer than 7 days; the code refuses less than 60 s.
    condition     = floor(var.app.url_ttl_s) == var.app.url_ttl_s && var.app.url_ttl_s >= 60 && var.app.url_ttl_s <= 604800
    error_message = "app.url_ttl_s must be a whole number of seconds between 60 and 604800 (7 days)."
  }

  validation {
    condition     = var.app.model_timeout_s >= 1 && var.app.model_deadline_s >= var.app.model_timeout_s
    error_message = "app.model_timeout_s must be >= 1 and app.model_deadline_s must be >= app.model_timeout_s (the deadline bounds all attempts together)."
  }

  validation {
    # Eventarc stops retrying after 24 hours; an older event can only be stale.
    condition     = var.app.max_event_age_s >= 60 && var.app.max_event_age_s <= 86400
    error_message = "app.max_event_age_s must be between 60 and 86400 seconds."
  }

  validation {
    condition     = can(regex("^[a-z0-9-]+$", var.app.vertex_location))
    error_message = "app.vertex_location must be a Vertex AI location such as global or europe-west1."
  }

  validation {
    # The app PUTs right after asking; the code accepts up to 7 days, but a
    # long-lived URL is a standing write credential for the uploads bucket.
    condition     = floor(var.app.upload_url_ttl_s) == var.app.upload_url_ttl_s && var.app.upload_url_ttl_s >= 60 && var.app.upload_url_ttl_s <= 3600
    error_message = "app.upload_url_ttl_s must be a whole number of seconds between 60 and 3600."
  }

  validation {
    condition     = floor(var.app.daily_uploads) == var.app.daily_uploads && var.app.daily_uploads >= 1 && var.app.daily_uploads <= 1000
    error_message = "app.daily_uploads must be a whole number between 1 and 1000."
  }

  validation {
    condition     = floor(var.app.max_pending_uploads) == var.app.max_pending_uploads && var.app.max_pending_uploads >= 1 && var.app.max_pending_uploads <= min(20, var.app.daily_uploads)
    error_message = "app.max_pending_uploads must be a whole number between 1 and 20, and at most app.daily_uploads."
  }

  validation {
    condition     = floor(var.app.face_min_score) == var.app.face_min_score && var.app.face_min_score >= 1 && var.app.face_min_score <= 100
    error_message = "app.face_min_score must be a whole number between 1 and 100."
  }

  validation {
    condition     = var.app.second_face_ratio >= 0.05 && var.app.second_face_ratio <= 1
    error_message = "app.second_face_ratio must be between 0.05 and 1 (a fraction of the largest face's width)."
  }

  validation {
    condition     = floor(var.app.daily_generations) == var.app.daily_generations && var.app.daily_generations >= 0 && var.app.daily_generations <= 10000
    error_message = "app.daily_generations must be a whole number of cost units between 0 and 10000."
  }

  validation {
    condition     = floor(var.app.daily_edits) == var.app.daily_edits && var.app.daily_edits >= 0 && var.app.daily_edits <= 10000
    error_message = "app.daily_edits must be a whole number of cost units between 0 and 10000."
  }

  # The anonymous tier is the lower one: a guest gets no more than a signed-in user.
  validation {
    condition     = floor(var.app.anonymous_daily_generations) == var.app.anonymous_daily_generations && var.app.anonymous_daily_generations >= 0 && var.app.anonymous_daily_generations <= var.app.daily_generations
    error_message = "app.anonymous_daily_generations must be a whole number between 0 and app.daily_generations."
  }

  validation {
    condition     = floor(var.app.anonymous_daily_edits) == var.app.anonymous_daily_edits && var.app.anonymous_daily_edits >= 0 && var.app.anonymous_daily_edits <= var.app.daily_edits
    error_message = "app.anonymous_daily_edits must be a whole number between 0 and app.daily_edits."
  }

  validation {
    condition     = floor(var.app.user_max_in_flight) == var.app.user_max_in_flight && var.app.user_max_in_flight >= 1 && var.app.user_max_in_flight <= 20
    error_message = "app.user_max_in_flight must be a whole number between 1 and 20."
  }

  validation {
    # 0 is the kill switch: no generation or edit at all.
    condition     = floor(var.app.daily_budget) == var.app.daily_budget && var.app.daily_budget >= 0 && var.app.daily_budget <= 10000000
    error_message = "app.daily_budget must be a whole number of cost units between 0 (stops all generation) and 10000000."
  }

  validation {
    # The cache is how long flipping config/budget takes to reach every instance.
    condition     = floor(var.app.budget_cache_s) == var.app.budget_cache_s && var.app.budget_cache_s >= 0 && var.app.budget_cache_s <= 600
    error_message = "app.budget_cache_s must be a whole number of seconds between 0 and 600."
  }

  validation {
    # A phone photo is a few MiB; on_upload decodes it in its 1Gi of memory.
    condition     = floor(var.app.max_upload_bytes) == var.app.max_upload_bytes && var.app.max_upload_bytes >= 1024 && var.app.max_upload_bytes <= 104857600
    error_message = "app.max_upload_bytes must be a whole number of bytes between 1024 and 104857600 (100 MiB)."
  }

  validation {
    # config.py refuses more than Pillow's decompression-bomb limit (PIXEL_CEILING).
    condition     = floor(var.app.max_upload_pixels) == var.app.max_upload_pixels && var.app.max_upload_pixels >= 1 && var.app.max_upload_pixels <= 100000000
    error_message = "app.max_upload_pixels must be a whole number between 1 and 100000000 (Pillow's decompression-bomb limit)."
  }

  validation {
    # config.py refuses a side below 256: the face detector and crop need it.
    condition     = floor(var.app.max_side) == var.app.max_side && var.app.max_side >= 256 && var.app.max_side <= 8192
    error_message = "app.max_side must be a whole number of pixels between 256 and 8192."
  }

  validation {
    condition     = floor(var.app.max_text_chars) == var.app.max_text_chars && var.app.max_text_chars >= 1 && var.app.max_text_chars <= 10000
    error_message = "app.max_text_chars must be a whole number of characters between 1 and 10000."
  }

  validation {
    condition     = contains(["allow", "deny"], var.app.anonymous)
    error_message = "app.anonymous must be allow or deny."
  }

  validation {
    # Not off needs the project number, which main.tf passes from data.google_project.
    condition     = contains(["off", "monitor", "enforce"], var.app.app_check)
    error_message = "app.app_check must be off, monitor or enforce."
  }
}

variable "functions" {
  description = "Per-function overrides of the sizing defaults in main.tf (keys: on_upload, generate, edit, sessions, uploads, account, cleanup). Unset attributes keep their defaults."
  type = map(object({
    memory        = optional(string)
    cpu           = optional(string)
    timeout_s     = optional(number)
    min_instances = optional(number)
    max_instances = optional(number)
    concurrency   = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.functions) : contains(["on_upload", "generate", "edit", "sessions", "uploads", "account", "cleanup"], name)])
    error_message = "functions keys must be among on_upload, generate, edit, sessions, uploads, account, cleanup."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.memory == null ? true : can(regex("^[0-9]+(Mi|Gi|M|G)$", f.memory))])
    error_message = "functions[*].memory must look like 512Mi or 1Gi."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.cpu == null ? true : can(regex("^(0\\.[0-9]+|1|2|4|6|8)$", f.cpu))])
    error_message = "functions[*].cpu must be a fraction below 1 (e.g. 0.583) or one of 1, 2, 4, 6, 8."
  }

  validation {
    # HTTP functions may run 60 minutes; event-driven ones at most 9.
    condition = alltrue([for name, f in var.functions : f.timeout_s == null ? true : (
      f.timeout_s >= 1 && f.timeout_s <= (name == "on_upload" ? 540 : 3600)
    )])
    error_message = "functions[*].timeout_s must be between 1 and 3600 seconds (540 for on_upload, an event-driven function)."
  }

  validation {
    # Scale-to-zero by default; a warm instance is a deliberate, bounded cost.
    condition     = alltrue([for f in values(var.functions) : f.min_instances == null ? true : f.min_instances >= 0 && f.min_instances <= 3])
    error_message = "functions[*].min_instances must be between 0 and 3."
  }

  validation {
    # An upper bound on instances is an upper bound on model spend.
    condition     = alltrue([for f in values(var.functions) : f.max_instances == null ? true : f.max_instances >= 1 && f.max_instances <= 100])
    error_message = "functions[*].max_instances must be between 1 and 100."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.concurrency == null ? true : f.concurrency >= 1 && f.concurrency <= 80])
    error_message = "functions[*].concurrency must be between 1 and 80."
  }
}

variable "cleanup_schedule" {
  description = "Cron schedule of the cleanup job."
  type        = string
  default     = "30 3 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.cleanup_schedule))) == 5
    error_message = "cleanup_schedule must be a five-field cron expression, e.g. \"30 3 * * *\"."
  }
}

variable "cleanup_time_zone" {
  description = "Time zone (tz database name) in which cleanup_schedule is read."
  type        = string
  default     = "Etc/UTC"
}

variable "create_firestore_database" {
  description = "Create the (default) Firestore database. Set to false when the project already has one (for example made by Firebase); it must be in native mode."
  type        = bool
  default     = true
}

variable "firestore_delete_protection" {
  description = "Protect the Firestore database against deletion."
  type        = bool
  default     = true
}

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete buckets that still hold objects. Keep false outside throwaway projects."
  type        = bool
  default     = false
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channels (projects/PROJECT/notificationChannels/ID) that every alert policy (monitoring.tf, deadletters.tf) and the billing budget notify. Empty: alerts open incidents in the console only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for channel in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "alert_notification_channels must be full names: projects/PROJECT/notificationChannels/ID."
  }

  validation {
    # A billing budget notifies at most 5 Monitoring channels.
    condition     = length(var.alert_notification_channels) <= 5
    error_message = "alert_notification_channels may name at most 5 channels (the billing budget's limit)."
  }
}

variable "billing_account" {
  description = "Cloud Billing account id (XXXXXX-XXXXXX-XXXXXX) that pays for the project. Set it to create a billing budget with alerts (budget.tf); empty: no budget. The applying identity needs Billing Account Costs Manager on it."
  type        = string
  default     = ""

  validation {
    condition     = var.billing_account == "" || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account))
    error_message = "billing_account must be empty or a billing account id such as 012345-6789AB-CDEF01 (without billingAccounts/)."
  }
}

variable "billing_budget_amount" {
  description = "Monthly amount of the billing budget, in whole units of billing_budget_currency. Alerts at 50, 90 and 100 % of it, and when the month is forecast to pass it."
  type        = number
  default     = 100

  validation {
    condition     = floor(var.billing_budget_amount) == var.billing_budget_amount && var.billing_budget_amount >= 1
    error_message = "billing_budget_amount must be a whole number of at least 1."
  }
}

variable "billing_budget_currency" {
  description = "Currency of billing_budget_amount (ISO 4217, e.g. EUR). Null: the billing account's currency, the only one it accepts."
  type        = string
  default     = null

  validation {
    condition     = var.billing_budget_currency == null ? true : can(regex("^[A-Z]{3}$", var.billing_budget_currency))
    error_message = "billing_budget_currency must be a three-letter currency code such as EUR, or null."
  }
}
