# What the functions log, counted, and what an operator is told about.
#
# Every function writes one JSON object per line on stdout; Cloud Logging
# makes it jsonPayload, and jsonPayload.event is the stable key of each kind
# of line (the structured log contract: request, generation,
# model_not_found, quota_exceeded, budget_exhausted, ingest, cleanup). Gen2
# functions log as their Cloud Run service (resource.type
# "cloud_run_revision", service_name "pixme-generate" and so on), so every
# metric filters on the services that write that event and on the event.
#
# Metric names: the Cloud Monitoring type is
# logging.googleapis.com/user/<name>. PromQL (used where a threshold
# condition cannot express the question) names the same series
# logging_googleapis_com:user_<name with every character other than
# letters, digits and _ replaced by _>, and a distribution's running sum
# is <that>_sum.

locals {
  # The functions that charge the budget (they call the model), by Cloud Run
  # service name: ("pixme-generate" OR "pixme-edit").
  budget_charging_services = [for name, f in local.functions : google_cloudfunctions2_function.fn[name].name if f.calls_model]
  budget_services_clause   = join(" OR ", [for service in local.budget_charging_services : "\"${service}\""])

  # Each function's Cloud Run service, and the HTTPS ones as a filter clause.
  service_of     = { for name, f in local.functions : name => google_cloudfunctions2_function.fn[name].name }
  https_services = join(" OR ", [for name, f in local.functions : "\"${local.service_of[name]}\"" if f.trigger == "https"])
  log_resource   = "resource.type=\"cloud_run_revision\""

  # Counters: one point per matching line. labels: metric label => the
  # jsonPayload field it is extracted from (the "by code", "by reason" of
  # the operations issue); a line without the field gets an empty label.
  event_metrics = {
    generations = {
      description = "Model calls made by generate and edit (after retries and fallbacks), by kind, outcome (image, refused, failed) and the model that answered or was tried last."
      services    = local.budget_services_clause
      filter      = "jsonPayload.event=\"generation\""
      labels      = { kind = "kind", outcome = "outcome", model = "model" }
    }
    refusals = {
      description = "Model calls that ended refused (the model declined the prompt or image), by kind and refusal code."
      services    = local.budget_services_clause
      filter      = "jsonPayload.event=\"generation\" AND jsonPayload.outcome=\"refused\""
      labels      = { kind = "kind", code = "code" }
    }
    server_errors = {
      description = "HTTPS responses with status 5xx (event=request), by error code; each is also an Error Reporting event."
      services    = local.https_services
      filter      = "jsonPayload.event=\"request\" AND jsonPayload.status>=500"
      labels      = { code = "code" }
    }
    quota_exceeded = {
      description = "Requests refused because a user's quota was spent, by quota (generations, edits, in_flight)."
      services    = local.https_services
      filter      = "jsonPayload.event=\"quota_exceeded\""
      labels      = { quota = "quota" }
    }
    ingest_rejections = {
      description = "Uploads that on_upload rejected (no face, several faces, too large, not an image...), by reason."
      services    = "\"${local.service_of["on_upload"]}\""
      filter      = "jsonPayload.event=\"ingest\" AND jsonPayload.outcome=\"rejected\""
      labels      = { reason = "reason" }
    }
    model_not_found = {
      description = "A configured model id answered 404 (the model was retired), by model id."
      services    = local.budget_services_clause
      filter      = "jsonPayload.event=\"model_not_found\""
      labels      = { model = "model" }
    }
    cleanup_runs = {
      description = "Runs of the cleanup function, by outcome (done, failed)."
      services    = "\"${local.service_of["cleanup"]}\""
      filter      = "jsonPayload.event=\"cleanup\""
      labels      = { outcome = "outcome" }
    }
  }

  # PromQL names (see the top of this file).
  promql_generation_cost = "logging_googleapis_com:user_${replace(google_logging_metric.generation_cost.name, "/[^A-Za-z0-9_]/", "_")}_sum"
  promql_cleanup_runs    = "logging_googleapis_com:user_${replace(google_logging_metric.events["cleanup_runs"].name, "/[^A-Za-z0-9_]/", "_")}"

  # "Budget nearly spent" fires at this share of app.daily_budget.
  budget_alert_fraction = 0.8
  budget_alert_units    = floor(var.app.daily_budget * local.budget_alert_fraction)

  # More than this many handled 5xx responses within 5 minutes opens an
  # incident (see the alert for why a count and not a ratio).
  server_errors_per_5_min = 5

  # Cleanup runs once a day (var.cleanup_schedule); Cloud Scheduler retries
  # a failed call 3 times within about half an hour, and a run lasts at most
  # its timeout. A day without a "done" plus that margin means it stopped.
  cleanup_absence_hours = 26
}

resource "google_logging_metric" "events" {
  for_each = local.event_metrics

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  description = each.value.description
  filter      = "${local.log_resource} AND resource.labels.service_name=(${each.value.services}) AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = { for label, field in each.value.labels : label => "EXTRACT(jsonPayload.${field})" }

  depends_on = [google_project_service.apis]
}

# How long the model takes: one value per model call (latency_ms of the
# generation line), so percentiles per kind and model are one chart away.
resource "google_logging_metric" "model_latency" {
  name        = "${var.name_prefix}-model-latency"
  description = "Duration of each model call (generate, edit) in milliseconds, by kind, model and outcome."
  filter      = "${local.log_resource} AND resource.labels.service_name=(${local.budget_services_clause}) AND jsonPayload.event=\"generation\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"

    labels {
      key        = "kind"
      value_type = "STRING"
    }
    labels {
      key        = "model"
      value_type = "STRING"
    }
    labels {
      key        = "outcome"
      value_type = "STRING"
    }
  }

  value_extractor = "EXTRACT(jsonPayload.latency_ms)"
  label_extractors = {
    kind    = "EXTRACT(jsonPayload.kind)"
    model   = "EXTRACT(jsonPayload.model)"
    outcome = "EXTRACT(jsonPayload.outcome)"
  }

  # 250 ms to ~4 minutes in 20 buckets growing by 1.4: a model call takes
  # 10-60 s, a refusal or failure can return much sooner.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 1.4
      scale              = 250
    }
  }

  depends_on = [google_project_service.apis]
}

# What the budget was charged: the cost of each generation line (cost units,
# 0 when the charge was refunded). Its running sum is the day's spend.
resource "google_logging_metric" "generation_cost" {
  name        = "${var.name_prefix}-generation-cost"
  description = "Cost units charged to the daily budget per model call (0 when refunded); the sum over a day is the day's spend."
  filter      = "${local.log_resource} AND resource.labels.service_name=(${local.budget_services_clause}) AND jsonPayload.event=\"generation\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  value_extractor = "EXTRACT(jsonPayload.cost)"

  # Costs are small whole numbers (an alias's ;cost=N, 1 by default).
  bucket_options {
    linear_buckets {
      num_finite_buckets = 10
      width              = 1
      offset             = 0
    }
  }

  depends_on = [google_project_service.apis]
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

# --- alert policies ---------------------------------------------------------
#
# Every policy notifies var.alert_notification_channels (none by default: the
# incident shows in the console), and its documentation says what it means
# and what the operator does. On the first apply a policy can be refused
# while its new log-based metric propagates; apply again.

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

# 5xx: a count over 5 minutes, not a ratio of all requests. Traffic is small
# and bursty (every function scales to zero): at a handful of requests a
# ratio swings from 0 to 50 % on one failure, and with no traffic it is
# undefined; a count says how many people were failed, whatever the volume.
# Each handled 5xx is already an Error Reporting event, so this fires on a
# burst, not on the first one. It counts the code's own request lines: a
# request the platform ends first (timeout, out of memory, no instance
# free) logs none, and shows in Cloud Run's request log and its
# run.googleapis.com/request_count metric (response_code_class 5xx) instead;
# counting both here would count each handled 5xx twice.
resource "google_monitoring_alert_policy" "server_errors" {
  display_name = "Pix Me: 5xx responses"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "More than ${local.server_errors_per_5_min} responses with status 5xx in 5 minutes"

    condition_threshold {
      filter          = "${local.log_resource} AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.events["server_errors"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = local.server_errors_per_5_min
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

  alert_strategy {
    auto_close = "3600s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Pix Me: functions are answering 5xx"
    content   = <<-EOT
      More than ${local.server_errors_per_5_min} requests in 5 minutes got a 5xx answer from the app's
      functions. The metric `${google_logging_metric.events["server_errors"].name}` has the error `code`
      as a label and the function as `service_name`; Error Reporting groups
      the same events with their stack traces. Logs:
      `jsonPayload.event="request" AND jsonPayload.status>=500`.
      Read the `code` first: 503 codes name the dependency that was
      unavailable (Firestore, Cloud Storage, Vertex AI), 502 codes a model
      answer the configuration cannot use, 500 a bug or a bad setting. Then:
      wait out or escalate the outage, fix the setting, or roll back a bad
      deploy by re-running the previous build of main. Requests the platform
      ended itself (timeouts, out of memory) are not counted here: see the
      function's Cloud Run metrics (request count by response code class).
    EOT
  }

  depends_on = [google_project_service.apis]
}

# Budget nearly spent: the cost of every generation summed over a day,
# against a share of app.daily_budget. A threshold condition cannot sum the
# values of a distribution, so this is a PromQL condition on the metric's
# running sum. The window is a rolling 24 h (the longest an alerting policy
# may look back in one alignment period is 25 h), while the budget resets at
# 00:00 UTC: the rolling sum always includes all of today's spend plus the
# end of yesterday's, so it can fire early (after a busy evening), never
# late. The budget is Terraform's app.daily_budget; an override in Firestore
# config/budget is not known here.
resource "google_monitoring_alert_policy" "budget_nearly_spent" {
  display_name = "Pix Me: daily budget nearly spent"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "Cost charged in the last 24 h above ${local.budget_alert_fraction * 100} % of the daily budget"

    condition_prometheus_query_language {
      query               = "sum(increase(${local.promql_generation_cost}{monitored_resource=\"cloud_run_revision\"}[1d])) > ${local.budget_alert_units}"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Pix Me: ${local.budget_alert_fraction * 100} % of the daily budget is spent"
    content   = <<-EOT
      Generations and edits charged more than ${local.budget_alert_units} cost units in the
      last 24 hours (${local.budget_alert_fraction * 100} % of app.daily_budget = ${var.app.daily_budget}). When the
      budget is spent, generate and edit refuse with 503 budget_exhausted
      until 00:00 UTC. If the demand is real and affordable, raise the budget
      now with `daily_budget` in the Firestore document `config/budget`
      (infra/README.md, "Budget kill switch"), or lower it to stop spending.
      Look for abuse first: the metric `${google_logging_metric.events["generations"].name}`
      by model, and the logs of `jsonPayload.event="generation"` by uid_hash.
      The window is rolling, so late spend of yesterday counts too.
    EOT
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "cleanup_failed" {
  display_name = "Pix Me: cleanup failed"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "A cleanup run ended with outcome failed"

    condition_threshold {
      filter          = "${local.log_resource} AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.events["cleanup_runs"].name}\" AND metric.labels.outcome=\"failed\""
      comparison      = "COMPARISON_GT"
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

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Pix Me: the cleanup run failed"
    content   = <<-EOT
      The daily cleanup (expired sessions, uploads and their images) logged
      `event="cleanup"` with `outcome="failed"`; its `code` says why. Expired
      data stays until a run succeeds (Firestore TTL and the bucket lifecycle
      rules remain as safety nets). Read the run's logs
      (`jsonPayload.event="cleanup"` on service `${local.service_of["cleanup"]}`),
      fix the cause, then run it now:
      `gcloud scheduler jobs run ${var.name_prefix}-cleanup --location ${var.region}`.
      Cleanup works in bounded batches and resumes where it stopped.
    EOT
  }

  depends_on = [google_project_service.apis]
}

# A cleanup that never runs logs nothing, so "failed" alone misses it: this
# fires when no run ended "done" for a day plus a margin. PromQL, because
# one policy holds a single PromQL condition and a threshold condition
# cannot test for absence over more than a day. On a fresh deployment it is
# open until the first run (start one with gcloud scheduler jobs run).
resource "google_monitoring_alert_policy" "cleanup_missing" {
  display_name = "Pix Me: no successful cleanup for a day"
  combiner     = "OR"
  severity     = "WARNING"

  conditions {
    display_name = "No cleanup run ended done in ${local.cleanup_absence_hours} h"

    condition_prometheus_query_language {
      query               = "absent_over_time(${local.promql_cleanup_runs}{monitored_resource=\"cloud_run_revision\",outcome=\"done\"}[${local.cleanup_absence_hours}h])"
      duration            = "0s"
      evaluation_interval = "600s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Pix Me: cleanup has not succeeded for over a day"
    content   = <<-EOT
      No cleanup run logged `event="cleanup"` with `outcome="done"` in the
      last ${local.cleanup_absence_hours} hours, though it is scheduled `${var.cleanup_schedule}` (${var.cleanup_time_zone}).
      Check the Cloud Scheduler job `${var.name_prefix}-cleanup` (paused? its last
      attempt's status: a 403 means the scheduler account lost run.invoker on
      cleanup) and the function's logs. Run it now with
      `gcloud scheduler jobs run ${var.name_prefix}-cleanup --location ${var.region}`.
      Right after the first deployment this is open until the first run.
      If you make the schedule less frequent than daily, this alert needs a
      longer window.
    EOT
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "model_not_found" {
  display_name = "Pix Me: a configured model is retired (404)"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "model_not_found logged"

    condition_threshold {
      filter          = "${local.log_resource} AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.events["model_not_found"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.labels.model"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Pix Me: a configured model id answers 404"
    content   = <<-EOT
      A model id in `app.model` or `app.models` answered 404: Google retired
      it (the incident's `model` label names it). While a fallback is listed
      after it (`alias=model-id|fallback-id`) the app goes on with the
      fallback, at one wasted call per request; without one, that alias
      fails. Replace the id in `app.model` / `app.models` (infra/deploy.tfvars)
      with a current model and deploy. The logs
      (`jsonPayload.event="model_not_found"`) show the `fallback` used.
    EOT
  }

  depends_on = [google_project_service.apis]
}
