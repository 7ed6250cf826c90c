# A Cloud Billing budget on this project's spend, in money, beside the app's
# own daily budget in cost units (app.daily_budget, enforced in code). It
# does not stop anything: it emails the billing account's administrators and
# notifies var.alert_notification_channels at each threshold of the month's
# spend (and when the month is forecast to pass the amount).
#
# Created only when billing_account is set. The identity that applies needs
# billing.budgets.create/update/delete on that billing account (Billing
# Account Costs Manager, roles/billing.costsManager, or Billing Account
# Administrator); project roles are not enough. The Billing Budgets API
# (billingbudgets.googleapis.com, main.tf) is called with a quota project:
# with user credentials set GOOGLE_BILLING_PROJECT and
# USER_PROJECT_OVERRIDE=true, as for the Firebase APIs (README).

locals {
  billing_budget_thresholds = [0.5, 0.9, 1.0]
}

resource "google_billing_budget" "project" {
  count = var.billing_account == "" ? 0 : 1

  billing_account = var.billing_account
  display_name    = "${var.name_prefix} (${var.project_id})"

  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
    # Month to date, the budget's default period.
    calendar_period = "MONTH"
  }

  amount {
    specified_amount {
      # null: the billing account's own currency (a different one is refused).
      currency_code = var.billing_budget_currency
      units         = tostring(var.billing_budget_amount)
    }
  }

  dynamic "threshold_rules" {
    for_each = local.billing_budget_thresholds
    content {
      threshold_percent = threshold_rules.value
      spend_basis       = "CURRENT_SPEND"
    }
  }

  # The month is on course to exceed the amount: warned before it happens.
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  all_updates_rule {
    monitoring_notification_channels = var.alert_notification_channels
    # Billing administrators and users of the account get the emails too.
    disable_default_iam_recipients = false
  }

  depends_on = [google_project_service.apis]
}
