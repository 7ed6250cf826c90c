# Bootstrap: the bucket that holds the main stack's Terraform state. It has
# to exist before `terraform init` of infra/ can use it, so it is made here,
# once per project, by a configuration whose own state stays local
# (no backend block: terraform.tfstate in this folder). That state holds
# only this bucket; if it is lost, `terraform import google_storage_bucket.state
# <bucket>` brings it back. See infra/README.md, "State".

terraform {
  required_version = ">= 1.6"

  # The same exact pin as the main stack (versions.tf).
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "= 7.31.0"
    }
  }
}

provider "google" {
  project = var.project_id
}

variable "project_id" {
  description = "Google Cloud project that holds the state bucket (the one the stack deploys into)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits or hyphens)."
  }
}

variable "location" {
  description = "Location of the state bucket: the stack's region, or a multi-region such as EU."
  type        = string
  default     = "europe-west1"
}

variable "bucket" {
  description = "Name of the state bucket. Empty: <project_id>-tfstate, the name cloudbuild.yaml expects (_TF_STATE_BUCKET)."
  type        = string
  default     = ""
}

locals {
  bucket = var.bucket == "" ? "${var.project_id}-tfstate" : var.bucket
}

# Google-managed encryption: a customer-managed key (CMEK) would add a KMS key
# ring to run, rotate and never lose, for no reader this stack does not already
# control through IAM.
#trivy:ignore:AVD-GCP-0066
resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Access logs of the state bucket would go to another bucket that also needs bootstrapping; Cloud Audit Logs (Data Access, if enabled) record who read the state.
  name     = local.bucket
  location = var.location

  # Every apply writes a new generation; an older one is how a broken or
  # mistaken state is rolled back.
  versioning {
    enabled = true
  }

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Old generations are kept, not forever: the 20 latest, each for 90 days
  # after it was replaced.
  lifecycle_rule {
    condition {
      num_newer_versions = 20
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 90
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # The state of everything the stack made is in here.
  lifecycle {
    prevent_destroy = true
  }
}

output "bucket" {
  description = "The state bucket."
  value       = google_storage_bucket.state.name
}

output "init_command" {
  description = "How the main stack uses it (run in infra/). The prefix is always pixme."
  value       = "terraform init -backend-config=\"bucket=${google_storage_bucket.state.name}\" -backend-config=\"prefix=pixme\""
}
