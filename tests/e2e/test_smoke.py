"""`python -m local.smoke` run as an operator runs it, in a subprocess, against
the e2e stack: the flow passes and leaves nothing of its user behind; a
refused token and an unreachable function end in `smoke: FAIL <step>` with a
nonzero exit (and the second still deletes what the run made); a stack with
App Check enforced passes too; bad URL sources fail before any call. With
firebase-tools installed, the Firebase Auth sign-ins run against its Auth
emulator: the same REST calls as Google's, but unsigned tokens, which the
functions must refuse."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from local.issuer import mint_token
from local.smoke import API_FUNCTIONS
from local.stack import MODEL_BACKEND_VARS, Stack

ROOT = Path(__file__).resolve().parents[2]
STEPS = [
    "urls", "auth", "token", "ticket", "put", "ingest", "generate", "generate-image",
    "edit", "edit-image", "delete", "gone",
]  # fmt: skip


def operator_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment less whatever would point the smoke run at
    another deployment or token source (a developer's shell may hold some)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.endswith("_URL") or k.startswith(("PIXME_SMOKE_", "FIREBASE_")))
    }
    return {**env, **(extra or {})}


def url_vars(stack: Stack) -> dict[str, str]:
    """The function URLs under the names out/stack/stack.env exports after `make up`."""
    return {f"{name.upper()}_URL": stack.functions[name] for name in API_FUNCTIONS}


def smoke(env: Mapping[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # Polls faster than the default (1 s, meant for a deployment): ingest takes ~1 s here.
    argv = [sys.executable, "-m", "local.smoke", "--poll", "0.2", *args]
    return subprocess.run(
        argv, cwd=ROOT, env=dict(env), input=stdin, capture_output=True, text=True, timeout=240, check=False
    )


def lines_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    lines = done.stdout.splitlines()
    assert lines, done.stderr
    return lines


def passed_steps(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.match(r"smoke: (\S+) ok \d+ ms: ", line))]


def uid_in(lines: list[str]) -> str:
    found = [m.group(1) for line in lines if (m := re.match(r"smoke: token ok .*: uid (\S+) ", line))]
    assert len(found) == 1, lines
    return found[0]


def left_of(stack: Stack, uid: str) -> list[str]:
    """Whatever of `uid` is still stored, read from the emulators directly."""
    db, gcs = stack.firestore_client(), stack.storage_client()
    left = [
        f"gs://{bucket}/{blob.name}"
        for bucket in (stack.uploads_bucket, stack.assets_bucket)
        for blob in gcs.list_blobs(bucket)
        if f"/{uid}/" in blob.name
    ]
    owned = FieldFilter("owner", "==", uid)
    for collection in ("uploads", "sessions", "idempotency"):
        left += [d.reference.path for d in db.collection(collection).where(filter=owned).stream()]
    if db.collection("usage").document(f"user:{uid}").get().exists:
        left.append(f"usage/user:{uid}")
    return left


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_the_flow_passes_and_leaves_nothing_of_its_user(stack: Stack) -> None:
    # What `source out/stack/stack.env && make smoke` does: URLs and issuer from the environment.
    done = smoke(operator_env({**url_vars(stack), "PIXME_ISSUER_URL": stack.issuer_url or ""}))
    lines = lines_of(done)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1] == "smoke: pass"
    assert passed_steps(lines) == STEPS
    assert "FAIL" not in done.stdout
    assert re.search(r"generate-image ok .*: (PNG|JPEG) \d+x\d+", done.stdout), done.stdout
    assert left_of(stack, uid_in(lines)) == []


def test_a_refused_token_fails_at_the_first_call(stack: Stack) -> None:
    expired = mint_token(stack.issuer_url or "", "smoke-expired", ttl_s=-60)
    done = smoke(operator_env({**url_vars(stack), "PIXME_SMOKE_ID_TOKEN": expired}))
    lines = lines_of(done)
    assert done.returncode == 1
    assert lines[-1].startswith("smoke: FAIL ticket: POST uploads/: 401 invalid_token"), lines[-1]
    assert passed_steps(lines) == ["urls", "auth", "token"]


def test_an_unreachable_function_fails_its_step_and_the_run_deletes_what_it_made(stack: Stack) -> None:
    # The URLs come as `terraform output -json` piped in, with generate pointing nowhere.
    urls = {name: stack.functions[name] for name in API_FUNCTIONS}
    urls["generate"] = f"http://127.0.0.1:{closed_port()}"
    outputs = {"api_urls": {"sensitive": False, "type": ["object", {}], "value": urls}}
    env = operator_env({"PIXME_ISSUER_URL": stack.issuer_url or ""})
    done = smoke(env, "--outputs", "-", stdin=json.dumps(outputs))
    lines = lines_of(done)
    assert done.returncode == 1
    assert lines[-1].startswith("smoke: FAIL generate: ConnectionError"), lines[-1]
    assert passed_steps(lines) == ["urls", "auth", "token", "ticket", "put", "ingest"]
    assert any(line.startswith("smoke: cleanup ok: deleted uploads 1,") for line in lines), lines
    assert left_of(stack, uid_in(lines)) == []


@pytest.fixture(scope="module")
def enforcing() -> Iterator[Stack]:
    """A stack that refuses calls without a valid App Check token."""
    env = {"PIXME_APP_CHECK": "enforce"}
    caller = {k: v for k, v in os.environ.items() if k not in MODEL_BACKEND_VARS}
    with Stack(
        env_overrides=env, caller_env=caller, log_dir=ROOT / "out" / "stack" / "test-smoke", quiet=True
    ) as running:
        yield running


def test_the_flow_passes_with_app_check_enforced(enforcing: Stack) -> None:
    done = smoke(operator_env({**url_vars(enforcing), "PIXME_ISSUER_URL": enforcing.issuer_url or ""}))
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines_of(done)[-1] == "smoke: pass"
    assert "with App Check" in done.stdout


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("outputs without edit", "smoke: FAIL urls: api_urls has no edit"),
        ("outputs not JSON", "smoke: FAIL urls: "),
        ("some *_URL variables", "smoke: FAIL urls: EDIT_URL, SESSIONS_URL, ACCOUNT_URL not set"),
        ("no terraform state", "smoke: FAIL urls: "),
        ("anonymous without a key", "smoke: FAIL auth: --auth anonymous needs FIREBASE_API_KEY"),
        ("the issuer down", "smoke: FAIL token: <urlopen error"),
        ("App Check with a bad app id", "smoke: FAIL auth: FIREBASE_APP_ID 'web-app' is not 1:"),
    ],
)
def test_a_missing_input_fails_before_any_call(case: str, expected: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    complete = {name: dead for name in API_FUNCTIONS}
    outputs = tmp_path / "outputs.json"
    args: list[str] = []
    env = operator_env()
    if case == "outputs without edit":
        outputs.write_text(json.dumps({"api_urls": {"value": {**complete, "edit": None}}}))
        args = ["--outputs", str(outputs)]
    elif case == "outputs not JSON":
        outputs.write_text("not json")
        args = ["--outputs", str(outputs)]
    elif case == "some *_URL variables":
        env.update(UPLOADS_URL=dead, GENERATE_URL=dead)
    elif case == "no terraform state":
        # `make smoke` with nothing set runs `terraform output` (here in an empty
        # directory: no api_urls; or terraform is not installed: said so).
        args = ["--terraform-dir", str(tmp_path)]
    elif case == "anonymous without a key":
        args = ["--outputs", str(outputs), "--auth", "anonymous"]
        outputs.write_text(json.dumps({"api_urls": {"value": complete}}))
    elif case == "App Check with a bad app id":
        outputs.write_text(json.dumps({"api_urls": {"value": complete}}))
        args = ["--outputs", str(outputs), "--auth", "anonymous"]
        env.update(
            FIREBASE_API_KEY=API_KEY, FIREBASE_APP_ID="web-app", PIXME_SMOKE_APP_CHECK_DEBUG_TOKEN="debug"
        )
    else:  # a stack.env left by a stack that has stopped
        env.update({f"{name.upper()}_URL": dead for name in API_FUNCTIONS}, PIXME_ISSUER_URL=dead)
    done = smoke(env, *args)
    assert done.returncode == 1
    assert lines_of(done)[-1].startswith(expected), done.stdout
    if case == "no terraform state":
        assert "terraform" in lines_of(done)[-1]


# --- Firebase Auth's REST calls, against its emulator ---------------------------------

EMULATOR_PROJECT = "demo-pixme"  # a demo- project: the emulator reaches for nothing online
API_KEY = "emulator-key"  # the emulator wants a key, as Google does, and accepts any


@pytest.fixture(scope="module")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Firebase Auth emulator of firebase-tools (Node only, no download); its host:port."""
    firebase = shutil.which("firebase")
    if firebase is None:
        pytest.skip("firebase-tools is not installed (npm install -g firebase-tools)")
    home = tmp_path_factory.mktemp("auth-emulator")
    port, hub, logging_port = closed_port(), closed_port(), closed_port()
    emulators = {
        "auth": {"host": "127.0.0.1", "port": port},
        "hub": {"host": "127.0.0.1", "port": hub},
        "logging": {"host": "127.0.0.1", "port": logging_port},
        "ui": {"enabled": False},
    }
    (home / "firebase.json").write_text(json.dumps({"emulators": emulators}))
    argv = [firebase, "emulators:start", "--only", "auth", "--project", EMULATOR_PROJECT]
    with (home / "emulator.log").open("w") as log:
        proc = subprocess.Popen(argv, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/", timeout=2).json()["authEmulator"]["ready"]:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            assert proc.poll() is None, (home / "emulator.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Auth emulator did not start in 120 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def emulator_users(host: str, uids: list[str]) -> list[str]:
    """Which of `uids` the emulator still has (its admin token is `owner`)."""
    url = f"http://{host}/identitytoolkit.googleapis.com/v1/projects/{EMULATOR_PROJECT}/accounts:lookup"
    resp = requests.post(url, json={"localId": uids}, headers={"Authorization": "Bearer owner"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return [str(u["localId"]) for u in resp.json().get("users", [])]


def emulated_env(stack: Stack, host: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {**url_vars(stack), "FIREBASE_AUTH_EMULATOR_HOST": host, "FIREBASE_API_KEY": API_KEY}
    return operator_env({**base, **(extra or {})})


def test_an_anonymous_user_is_made_and_deleted_through_the_rest_api(stack: Stack, auth_emulator: str) -> None:
    done = smoke(emulated_env(stack, auth_emulator))
    lines = lines_of(done)
    assert done.returncode == 1
    assert passed_steps(lines) == ["urls", "auth", "token"]
    assert "(a new anonymous Firebase user, at http://" in lines[2]
    # The emulator signs nothing (alg none): the functions refuse its tokens.
    assert lines[-1].startswith("smoke: FAIL ticket: POST uploads/: 401 invalid_token"), lines[-1]
    uid = uid_in(lines)
    assert f"smoke: forget-user ok: deleted the anonymous Firebase user {uid}" in lines
    assert emulator_users(auth_emulator, [uid]) == []


def test_a_test_user_signs_in_with_its_password_and_is_kept(stack: Stack, auth_emulator: str) -> None:
    email, password = f"smoke-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    made = requests.post(
        f"http://{auth_emulator}/identitytoolkit.googleapis.com/v1/accounts:signUp",
        json={"email": email, "password": password, "returnSecureToken": True},
        headers={"X-Goog-Api-Key": API_KEY},
        timeout=10,
    )
    assert made.status_code == 200, made.text
    uid = made.json()["localId"]
    user = {"PIXME_SMOKE_EMAIL": email, "PIXME_SMOKE_PASSWORD": password}
    done = smoke(emulated_env(stack, auth_emulator, user))
    lines = lines_of(done)
    assert done.returncode == 1
    assert passed_steps(lines) == ["urls", "auth", "token"]
    assert uid_in(lines) == uid and f"(Firebase test user {email}, at http://" in lines[2]
    assert lines[-1].startswith("smoke: FAIL ticket: POST uploads/: 401 invalid_token"), lines[-1]
    assert not any("forget-user" in line for line in lines)
    assert emulator_users(auth_emulator, [uid]) == [uid]

    wrong = smoke(emulated_env(stack, auth_emulator, {**user, "PIXME_SMOKE_PASSWORD": "not-" + password}))
    assert wrong.returncode == 1
    refused = "smoke: FAIL token: accounts:signInWithPassword: 400 "
    assert lines_of(wrong)[-1].startswith(refused), wrong.stdout
