# The budget kill switch, observable. When the day's budget is spent, or the
# operator sets it to 0 (Firestore config/budget, README), generate and edit
# refuse with 503 budget_exhausted and log one structured line per refusal:
#   {"severity": "ERROR", "message": "budget exhausted", "event": "budget_exhausted", ...}
# The metric counts those lines; the alert fires on the first one.

locals {
  # The functions that charge the budget (they call the model), by Cloud Run
  # service name: ("pixme-generate" OR "pixme-edit").
  budget_charging_services = [for name, f in local.functions : google_cloudfunctions2_function.fn[name].name if f.calls_model]
  budget_services_clause   = join(" OR ", [for service in local.budget_charging_services : "\"${service}\""])
}

resource "google_logging_metric" "budget_exhausted" {
  name        = "${var.name_prefix}-budget-exhausted"
  description = "Requests that Pix Me refused because the day's budget (PIXME_DAILY_BUDGET, or Firestore config/budget) was spent or set to 0."

  # Gen2 functions log as their Cloud Run service. The code's JSON line
  # becomes jsonPayload; event is the stable key, the message is for people.
  filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${local.budget_services_clause}) AND jsonPayload.event=\"budget_exhausted\""

  # A counter: one point per matching entry.
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "budget_exhausted" {
  display_name = "Pix Me: daily budget exhausted"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "budget_exhausted refusals"

    condition_threshold {
      filter     = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.budget_exhausted.name}\""
      comparison = "COMPARISON_GT"
      # Any refusal at all: the first one means users are being turned away.
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  # Refusals stop at the next UTC midnight (a new day's budget) or when the
  # operator raises the budget; the incident closes a day after the last one.
  alert_strategy {
    auto_close = "86400s"
  }

  # None by default: the incident shows in the console. Add email, SMS or
  # chat channels through var.alert_notification_channels.
  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Pix Me: generation stopped, the daily budget is spent"
    content   = <<-EOT
      generate and edit are refusing requests with 503 budget_exhausted: the
      project's daily budget (cost units) is spent, or an operator set it to 0.
      It resets at 00:00 UTC. To change it now, set `daily_budget` in the
      Firestore document `config/budget` (see infra/README.md, "Budget kill
      switch"); the functions pick it up within PIXME_BUDGET_CACHE_S
      (${var.app.budget_cache_s} s). Deleting the document restores
      PIXME_DAILY_BUDGET (${var.app.daily_budget}).
    EOT
  }

  depends_on = [google_project_service.apis]
}
