# The settings Cloud Build deploys with (cloudbuild.yaml passes project_id and
# region). Committed on purpose: what is deployed is reviewed with the code.
# Every key is optional; see variables.tf for the defaults and their checks.

app = {
  model          = "gemini-nano-banana-2.1"
  models         = "flash=gemini-nano-banana-2.1|gemini-3.1-flash-image,pro=gemini-3-pro-image;cost=4;requires=plan:pro"
  retention_days = 30
  daily_budget   = 5000
  anonymous      = "allow"
  app_check      = "monitor"
}
