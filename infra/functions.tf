resource "google_cloudfunctions2_function" "fn" {
  #checkov:skip=CKV_GCP_124:ALLOW_ALL only for the app's HTTPS functions (function_specs ingress), which phones call over the internet; on_upload and cleanup are internal-only.
  for_each = local.functions

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = each.value.description
  labels      = { component = replace(each.key, "_", "-") }

  build_config {
    runtime     = "python312"
    entry_point = each.value.entry_point
    # Built as the dedicated pixme-build account (iam.tf), which holds only
    # what a build needs; its full name, projects/P/serviceAccounts/EMAIL.
    service_account = google_service_account.sa["build"].id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout_s
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.sa[each.value.identity].email
    # THREADS: the Functions Framework serves requests on that many gunicorn
    # threads (by default 4 per CPU, whatever the concurrency). Where an
    # instance takes several requests it is set to that concurrency, so 8
    # model calls wait side by side rather than 4 running and 4 queued.
    environment_variables = merge(
      local.function_env[each.key],
      each.value.concurrency > 1 ? { THREADS = tostring(each.value.concurrency) } : {},
    )
  }

  # Only on_upload has an event trigger; the others are plain HTTPS functions.
  dynamic "event_trigger" {
    for_each = each.value.trigger == "storage" ? [each.key] : []

    content {
      event_type     = "google.cloud.storage.object.v1.finalized"
      trigger_region = var.region
      # The code raises only on transient errors and drops stale events, so
      # retrying is safe and makes transient failures heal by themselves.
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.sa["trigger"].email

      event_filters {
        attribute = "bucket"
        value     = google_storage_bucket.uploads.name
      }
    }
  }

  lifecycle {
    precondition {
      condition     = !each.value.calls_model || max(var.app.model_timeout_s, var.app.model_deadline_s) < each.value.timeout_s
      error_message = "The model timeout and deadline (app.model_timeout_s, app.model_deadline_s) must be below the timeout of ${each.key} (${each.value.timeout_s} s), or the platform kills the request before the code can answer."
    }

    precondition {
      # Serving several requests at once needs at least one whole CPU.
      condition     = each.value.concurrency == 1 || try(tonumber(each.value.cpu) >= 1, false)
      error_message = "${each.key}: concurrency above 1 needs cpu of at least 1."
    }
  }

  # Everything a first apply must have in place before the build and the
  # trigger: the APIs, every grant (including the build account's, the Cloud
  # Storage agent's pubsub.publisher and the Eventarc agent's role), and the
  # Eventarc and Pub/Sub service agents themselves (iam.tf).
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.project,
    google_storage_bucket_iam_member.buckets,
    google_storage_bucket_iam_member.build_reads_source,
    google_project_iam_member.build_reads_function_sources,
    google_service_account_iam_member.signs_as_itself,
    google_service_account_iam_member.pubsub_agent_signs_as_trigger,
    google_project_service_identity.eventarc,
    google_project_service_identity.pubsub,
  ]
}

# Gen2 functions are Cloud Run services: invocation is run.invoker on the service.

# The app's endpoints are public at the IAM level; the code checks Firebase ID tokens.
resource "google_cloud_run_service_iam_member" "public_invoker" {
  #checkov:skip=CKV_GCP_102:The app's endpoints must be invocable without Google credentials; every request is authenticated in code with a Firebase ID token (web.caller).
  for_each = { for name, f in local.functions : name => f if f.public }

  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Eventarc delivers upload events as the trigger account, to on_upload only.
resource "google_cloud_run_service_iam_member" "trigger_invokes_on_upload" {
  location = var.region
  service  = google_cloudfunctions2_function.fn["on_upload"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sa["trigger"].email}"
}

# The scheduler account is the only principal that may call cleanup.
resource "google_cloud_run_service_iam_member" "scheduler_invokes_cleanup" {
  location = var.region
  service  = google_cloudfunctions2_function.fn["cleanup"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sa["scheduler"].email}"
}
