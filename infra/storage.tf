# Three private buckets. Uploads and assets hold people's faces: no public
# access, no ACLs, no soft-deleted copies kept after the app or a lifecycle
# rule deletes an object, and lifecycle deletion as a backstop to cleanup.

# Google-managed encryption: a customer-managed key (CMEK) would add a KMS key
# ring to run, rotate and never lose, for no reader this stack does not already
# control through IAM.
#trivy:ignore:AVD-GCP-0066
resource "google_storage_bucket" "uploads" {
  #checkov:skip=CKV_GCP_62:Access logs would copy every object name (uploads/<uid>/...) into another bucket; Data Access audit logs are the way to audit reads.
  #checkov:skip=CKV_GCP_78:Versioning would keep deleted selfies; deletion must be final (soft delete is off for the same reason).
  name     = "${var.project_id}-${var.name_prefix}-uploads"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  soft_delete_policy {
    retention_duration_seconds = 0
  }

  # The app writes here only through the signed PUT URLs of the uploads
  # function; no principal may write otherwise (iam.tf), and the security
  # rules (rules.tf) shut the Firebase SDKs out. on_upload deletes each
  # original once ingested or rejected, and any object no pending upload names;
  # the app's cleanup removes uploads that never completed. This rule is the
  # safety net: it deletes whatever is a day old (the shortest useful age), not
  # sooner, so Eventarc's 24 hours of retries still find the original.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

# Google-managed encryption: a customer-managed key (CMEK) would add a KMS key
# ring to run, rotate and never lose, for no reader this stack does not already
# control through IAM.
#trivy:ignore:AVD-GCP-0066
resource "google_storage_bucket" "assets" {
  #checkov:skip=CKV_GCP_62:Access logs would copy every object name (selfies/<uid>/..., avatars/<uid>/...) into another bucket; Data Access audit logs are the way to audit reads.
  #checkov:skip=CKV_GCP_78:Versioning would keep deleted faces and avatars; deletion must be final (soft delete is off for the same reason).
  name     = "${var.project_id}-${var.name_prefix}-assets"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  soft_delete_policy {
    retention_duration_seconds = 0
  }

  # The cleanup function deletes expired images; this catches whatever it missed.
  lifecycle_rule {
    condition {
      age = var.app.retention_days + 1
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Google-managed encryption: a customer-managed key (CMEK) would add a KMS key
# ring to run, rotate and never lose, for no reader this stack does not already
# control through IAM.
#trivy:ignore:AVD-GCP-0066
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only zipped source built from the repository; nobody but the deploy reads it.
  #checkov:skip=CKV_GCP_78:Every archive is rebuilt from git and named by its hash; old versions have no use.
  name     = "${var.project_id}-${var.name_prefix}-gcf-source"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  # Old source archives are dead weight once deployed; the current one is
  # re-uploaded by the next apply if it ever ages out.
  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

data "archive_file" "functions" {
  type        = "zip"
  source_dir  = "${path.module}/../functions"
  output_path = "${path.module}/.build/functions-source.zip"
  # Every entry gets the same mode, whatever the umask of the checkout:
  # otherwise the same code zips to a different MD5 on another machine (or
  # Cloud Build), which renames the object and redeploys all functions.
  output_file_mode = "0644"
  excludes = [
    "__pycache__",
    "**/__pycache__",
    "**/*.pyc",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "tests",
    "**/tests",
    ".venv",
  ]
}

# The object name carries the archive's hash: a code change is a new object,
# which changes the function's build source and so redeploys it.
resource "google_storage_bucket_object" "functions_source" {
  name         = "functions-${data.archive_file.functions.output_md5}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.functions.output_path
  content_type = "application/zip"
}
