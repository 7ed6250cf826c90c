terraform {
  required_version = ">= 1.6"

  # Exact versions, not ranges: every plan (yours, Cloud Build's) runs the
  # same provider code until someone bumps these on purpose; a range lets a
  # fresh checkout or a new CI image pick up a new release silently. The
  # .terraform.lock.hcl written by the first terraform init records their
  # checksums and is committed (README, Apply).
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "= 7.31.0"
    }
    # google_firebase_storage_bucket (rules.tf) and google_project_service_identity
    # (iam.tf) are beta-only. Kept at the same release as google.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "= 7.31.0"
    }
    archive = {
      source = "hashicorp/archive"
      # 2.5 added glob patterns to archive_file excludes; output_file_mode is older (2.2).
      version = "= 2.7.1"
    }
  }

  # State lives in a GCS bucket so Cloud Build and people share it:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=pixme"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, { app = "pixme" })
}

provider "google-beta" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, { app = "pixme" })
}
