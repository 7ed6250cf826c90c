"""The deploy pipeline, read as text (no YAML parser ships with the project):
every step has what it runs, and only a reviewed plan is applied, on main."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = (ROOT / "cloudbuild.yaml").read_text()


def substitution(name: str) -> str:
    match = re.search(rf"^  {name}: (.+)$", BUILD, re.M)
    assert match, name
    return match.group(1).strip()


def test_the_test_step_has_python_312_java_21_terraform_and_the_emulators() -> None:
    assert substitution("_PYTHON_IMAGE") == "python:3.12-trixie"
    assert "openjdk-21-jre-headless" in BUILD
    assert "google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator" in BUILD
    # The unit tests run `terraform fmt`: the same Terraform is installed, checksum verified.
    assert substitution("_TERRAFORM_VERSION") == "1.11.4"
    assert "sha256sum -c" in BUILD and "make test" in BUILD and "make lint" in BUILD
    assert substitution("_TERRAFORM_IMAGE") == f"hashicorp/terraform:{substitution('_TERRAFORM_VERSION')}"


def test_only_the_saved_plan_is_applied_and_only_on_main() -> None:
    assert "-auto-approve" not in BUILD
    assert "-out=tfplan" in BUILD and re.search(r"terraform apply .*tfplan$", BUILD, re.M)
    assert '"$${BRANCH}" != "main"' in BUILD
    assert BUILD.count("-lock-timeout=") == 3  # init, plan, apply


def test_it_deploys_as_a_dedicated_account_with_committed_settings() -> None:
    account = r"^serviceAccount: projects/\$\{PROJECT_ID\}/serviceAccounts/\$\{_DEPLOY_SA\}$"
    assert re.search(account, BUILD, re.M)
    assert "-var-file=deploy.tfvars" in BUILD
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "infra/deploy.tfvars"], cwd=ROOT, capture_output=True
    )
    assert tracked.returncode == 0, "infra/deploy.tfvars must be committed"
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/deploy.tfvars"], cwd=ROOT)
    assert ignored.returncode == 1
