"""Cold starts stay lazy: checked in fresh interpreters, through sys.modules.

`import main` must not load the model SDK or the Firestore client, and the
upload and cleanup functions' service paths (built as their first request
builds them, with emulator-style settings pointing at a closed loopback port,
so no client connects) must never import google.genai.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.coldstart import FUNCTIONS, child_env

CHILD = r"""
import json, sys
import main
after_import = sorted(m for m in ("google.genai", "google.cloud.firestore") if m in sys.modules)
from pixme import wiring
built = {}
for name in sys.argv[1:]:
    getattr(wiring, name)()
    built[name] = "google.genai" in sys.modules
print(json.dumps({"after_import": after_import, "genai_after": built}))
"""


def run_child(*builds: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *builds],
        cwd=FUNCTIONS,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_import_main_loads_neither_genai_nor_firestore() -> None:
    assert run_child()["after_import"] == []


def test_upload_path_never_imports_genai() -> None:
    result = run_child("settings", "app_check", "verifier", "upload_service")
    assert result["genai_after"] == {
        "settings": False,
        "app_check": False,
        "verifier": False,
        "upload_service": False,
    }


def test_cleanup_path_never_imports_genai() -> None:
    assert run_child("settings", "cleanup")["genai_after"] == {"settings": False, "cleanup": False}


def test_the_check_would_see_genai() -> None:
    # The same child does see google.genai when a path imports it.
    assert run_child("model")["genai_after"] == {"model": True}


# --- PIXME_FIREBASE_PROJECT (kept here: the brief allows only two new test files) ---


def test_firebase_project_defaults_to_the_gcp_project() -> None:
    from pixme.config import Settings

    env = {"GOOGLE_CLOUD_PROJECT": "gcp", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}
    s = Settings.from_env(env)
    assert s.token_audience == "gcp" and s.issuer == "https://securetoken.google.com/gcp"


def test_tokens_of_the_firebase_project_are_accepted_and_the_gcp_projects_refused() -> None:
    from local.issuer import SigningKey, firebase_claims
    from pixme.adapters.auth import CertCache, FirebaseTokenVerifier
    from pixme.config import ENV_VARS, Settings
    from pixme.errors import Unauthenticated

    assert "PIXME_FIREBASE_PROJECT" in ENV_VARS
    env = {
        "GOOGLE_CLOUD_PROJECT": "gcp",
        "PIXME_FIREBASE_PROJECT": " fb-app ",
        "PIXME_UPLOADS_BUCKET": "u",
        "PIXME_ASSETS_BUCKET": "a",
    }
    s = Settings.from_env(env)
    assert s.project == "gcp" and s.issuer == "https://securetoken.google.com/fb-app"
    key = SigningKey.generate()

    class Certs(CertCache):
        def get(self, refresh: bool = False) -> dict[str, str]:
            return key.certs()

    verifier = FirebaseTokenVerifier(s, Certs("http://certs.invalid"))
    assert verifier.verify(key.sign(firebase_claims("fb-app", "alice", 3600))).uid == "alice"
    for project in ("gcp", "other"):
        try:
            verifier.verify(key.sign(firebase_claims(project, "alice", 3600)))
        except Unauthenticated as err:
            assert err.code == "invalid_token"
        else:
            raise AssertionError(f"a token for {project!r} was accepted")
