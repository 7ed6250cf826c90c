# Firebase security rules: what the Firebase client SDKs may do. Nothing: the
# app reaches data only through the functions, which use IAM (iam.tf) and are
# not subject to rules. Releasing deny-all rules closes what a console-made
# database or a bucket linked to Firebase could otherwise leave open.
#
# A ruleset is immutable: editing a .rules file makes a new ruleset, and its
# releases are replaced with it (the rules API cannot delete a ruleset that a
# release still points at).

resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/firestore.rules")
    }
  }

  depends_on = [google_project_service.apis]
}

# The (default) database's release is always named cloud.firestore.
resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"

  lifecycle {
    replace_triggered_by = [google_firebaserules_ruleset.firestore]
  }

  depends_on = [google_firestore_database.default]
}

# Storage rules apply to buckets linked to the Firebase project, one release
# per bucket, named firebase.storage/<bucket>. The provider documents linking
# a bucket before releasing rules for it; the link resource exists only in the
# google-beta provider. Linking grants nothing to this stack's accounts or to
# the app; Firebase serves SDK requests itself, and these rules refuse them.
resource "google_firebase_storage_bucket" "linked" {
  provider = google-beta
  for_each = local.buckets

  project   = var.project_id
  bucket_id = each.value

  depends_on = [google_project_service.apis]
}

# One deny-all ruleset, released to both buckets.
resource "google_firebaserules_ruleset" "storage" {
  project = var.project_id

  source {
    files {
      name    = "storage.rules"
      content = file("${path.module}/storage.rules")
    }
  }

  depends_on = [google_firebase_storage_bucket.linked]
}

resource "google_firebaserules_release" "storage" {
  for_each = local.buckets

  project      = var.project_id
  name         = "firebase.storage/${google_firebase_storage_bucket.linked[each.key].bucket_id}"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.storage.name}"

  lifecycle {
    replace_triggered_by = [google_firebaserules_ruleset.storage]
  }
}
