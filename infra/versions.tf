terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    # Only for google_firebase_storage_bucket (rules.tf), which is beta-only.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.0"
    }
    archive = {
      source = "hashicorp/archive"
      # 2.5 added glob patterns to archive_file excludes.
      version = "~> 2.5"
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
