# Cloud Scheduler calls cleanup with an OIDC token of the scheduler account,
# the only principal with run.invoker on it (functions.tf). The run.app URL is
# both the target and the token's audience; requests to it from Cloud
# Scheduler in the same project pass cleanup's internal-only ingress.

locals {
  cleanup_url = google_cloudfunctions2_function.fn["cleanup"].service_config[0].uri
}

resource "google_cloud_scheduler_job" "cleanup" {
  name        = "${var.name_prefix}-cleanup"
  description = "Deletes expired Pix Me sessions, uploads and images."
  region      = var.region
  schedule    = var.cleanup_schedule
  time_zone   = var.cleanup_time_zone

  # Scheduler's HTTP deadline is at most 30 minutes; cleanup works in bounded
  # batches and leaves the rest to the next run.
  attempt_deadline = "${min(local.functions.cleanup.timeout_s, 1800)}s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    uri         = local.cleanup_url
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.sa["scheduler"].email
      audience              = local.cleanup_url
    }
  }

  depends_on = [
    google_project_service.apis,
    google_cloud_run_service_iam_member.scheduler_invokes_cleanup,
  ]
}
