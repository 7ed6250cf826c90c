# Dead letters of the storage trigger.
#
# on_upload's trigger (functions.tf) is an Eventarc trigger that Cloud
# Functions creates, delivering through a Pub/Sub push subscription that
# Eventarc creates and names itself (eventarc-REGION-TRIGGER-sub-NNN). A
# failed delivery is retried with backoff for up to 24 hours and then
# dropped, unless that subscription has a dead-letter policy. Eventarc's
# documentation ("Retry events") sets one by updating that subscription;
# Terraform cannot: neither the function's event_trigger nor
# google_eventarc_trigger has a dead-letter setting (google provider
# issues 17697 and 25069), and the subscription is Eventarc's, so a
# google_pubsub_subscription here would be a second, competing one.
#
# So the stack creates everything on the dead-letter side, and the one
# update Terraform cannot make is a documented script, emitted as the output
# upload_dead_letter_setup and run after every apply (Cloud Build does it on
# main; by hand: terraform output -raw upload_dead_letter_setup | bash). It
# looks the subscription up from the trigger, so it follows the trigger when
# a redeploy recreates it, and it is idempotent. Pub/Sub's dead-lettering
# needs its service agent to publish to the dead-letter topic (granted here)
# and to subscribe to the source subscription (granted by the script, on
# that subscription only, since only Eventarc knows its name).
#
# The code acks what retrying cannot fix (permanent errors, events older than
# app.max_event_age_s), so what arrives here failed transiently
# max_delivery_attempts times in a row: about 40 minutes of retries.

locals {
  upload_dead_letter_attempts = 10
}

resource "google_pubsub_topic" "upload_dead_letters" {
  #checkov:skip=CKV_GCP_83:Pub/Sub encrypts messages with Google-managed keys; a customer-managed key would add a KMS key ring to run and rotate for messages that hold only object names.
  name = "${var.name_prefix}-upload-dead-letters"

  depends_on = [google_project_service.apis]
}

# Dead letters are kept here, 7 days (the most Pub/Sub keeps unacked
# messages), for an operator to read; the alert (below) fires on the first.
resource "google_pubsub_subscription" "upload_dead_letters" {
  name  = "${var.name_prefix}-upload-dead-letters"
  topic = google_pubsub_topic.upload_dead_letters.id

  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  # Never deleted for inactivity (the default is 31 days without a pull).
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.upload_dead_letters.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

locals {
  # projects/P/locations/R/triggers/ID, set once the function exists.
  upload_trigger = google_cloudfunctions2_function.fn["on_upload"].event_trigger[0].trigger

  upload_dead_letter_setup = <<-EOT
    set -eu
    # Attach the dead-letter topic to on_upload's Eventarc subscription (infra/deadletters.tf).
    sub="$(gcloud eventarc triggers describe '${element(split("/", local.upload_trigger), 5)}' --project '${var.project_id}' --location '${var.region}' --format 'value(transport.pubsub.subscription)')"
    test -n "$sub"
    gcloud pubsub subscriptions add-iam-policy-binding "$sub" --project '${var.project_id}' --member 'serviceAccount:${google_project_service_identity.pubsub.email}' --role roles/pubsub.subscriber --quiet > /dev/null
    gcloud pubsub subscriptions update "$sub" --project '${var.project_id}' --dead-letter-topic '${google_pubsub_topic.upload_dead_letters.id}' --max-delivery-attempts ${local.upload_dead_letter_attempts}
    echo "dead letters of $sub go to ${google_pubsub_topic.upload_dead_letters.id}"
  EOT
}

resource "google_monitoring_alert_policy" "upload_dead_letters" {
  display_name = "Pix Me: upload events dead-lettered"
  combiner     = "OR"
  severity     = "ERROR"

  conditions {
    display_name = "Messages waiting in ${google_pubsub_subscription.upload_dead_letters.name}"

    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.upload_dead_letters.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MAX"
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
    subject   = "Pix Me: uploads that on_upload could not process"
    content   = <<-EOT
      Storage events for the uploads bucket failed ${local.upload_dead_letter_attempts} deliveries in a row
      (transient errors each time) and were moved to the dead-letter topic
      `${google_pubsub_topic.upload_dead_letters.name}`. Those uploads never became ready, and
      the bucket's one-day lifecycle rule deletes their originals.
      Read them without removing them:
      `gcloud pubsub subscriptions pull ${google_pubsub_subscription.upload_dead_letters.name} --project ${var.project_id} --limit 10`
      (the data is the object: bucket, name, generation), and find each in the
      logs by `jsonPayload.event="ingest"` (outcome retry) and the object name.
      Fix the cause (often a dependency outage or a permission); the users
      upload again. Then ack the messages (`pull --auto-ack`); they expire
      after 7 days anyway.
    EOT
  }

  depends_on = [google_project_service.apis]
}
