output "api_urls" {
  description = "HTTPS endpoints the app calls (publicly invocable; Firebase ID token required by the code)."
  value       = { for name, f in local.functions : name => google_cloudfunctions2_function.fn[name].service_config[0].uri if f.public }
}

output "cleanup_url" {
  description = "Cleanup endpoint; only the scheduler service account may invoke it, from inside Google Cloud."
  value       = local.cleanup_url
}

output "uploads_bucket" {
  description = "Bucket of the raw selfies, uploads/<uid>/<upload_id>; the app writes to it only through the signed PUT URL the uploads function returns."
  value       = google_storage_bucket.uploads.name
}

output "assets_bucket" {
  description = "Private bucket of normalized selfies and generated avatars."
  value       = google_storage_bucket.assets.name
}

output "service_accounts" {
  description = "Email of each service account, by role."
  value       = { for role, sa in google_service_account.sa : role => sa.email }
}

output "cleanup_job" {
  description = "Cloud Scheduler job that runs cleanup (run it now with: gcloud scheduler jobs run NAME --location REGION)."
  value       = google_cloud_scheduler_job.cleanup.name
}

output "source_object" {
  description = "Deployed source archive; its name changes with the code."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.functions_source.name}"
}

output "upload_dead_letter_setup" {
  description = "Shell script (gcloud) that attaches the dead-letter topic to on_upload's Eventarc subscription, which Terraform cannot manage (deadletters.tf). Run after every apply: terraform output -raw upload_dead_letter_setup | bash"
  value       = local.upload_dead_letter_setup
}

output "upload_dead_letters" {
  description = "Subscription that keeps on_upload's dead-lettered storage events for 7 days (read with gcloud pubsub subscriptions pull)."
  value       = google_pubsub_subscription.upload_dead_letters.id
}
