"""`make smoke`: the demo's flow against a running deployment, one line per step.

    python -m local.smoke [--outputs FILE|-] [--auth issuer|token|password|anonymous] [--selfie PATH]

Where the functions are (the first that applies):
1. `--outputs FILE` (`-` reads stdin): what `terraform -chdir=infra output -json` printed;
2. UPLOADS_URL, GENERATE_URL, EDIT_URL, SESSIONS_URL and ACCOUNT_URL, the names
   out/stack/stack.env exports after `make up`;
3. otherwise `terraform -chdir=infra output -json` is run (`--terraform-dir`).

Who calls (`--auth`, default PIXME_SMOKE_AUTH, else the first one configured):
- issuer: the local stack's token issuer (PIXME_ISSUER_URL), a new uid per run,
  with an App Check token from the same issuer;
- token: PIXME_SMOKE_ID_TOKEN, an ID token obtained elsewhere;
- password: Firebase Auth's signInWithPassword for a test user
  (PIXME_SMOKE_EMAIL, PIXME_SMOKE_PASSWORD);
- anonymous: Firebase Auth's signUp, a new anonymous user per run, deleted at
  the end.
The Firebase ones need FIREBASE_API_KEY (the app's Web API key);
FIREBASE_AUTH_EMULATOR_HOST sends them to the Auth emulator instead. With App
Check enforced, PIXME_SMOKE_APP_CHECK_DEBUG_TOKEN (a debug token registered for
the app FIREBASE_APP_ID) is exchanged through App Check's exchangeDebugToken.

The flow: ticket, signed PUT of the selfie, ingest (polled, bounded), generate
(one style), one edit, each image fetched through its signed URL and decoded,
DELETE account/, then the upload and the session must answer 404 and the
export be empty. A run that fails after its ticket still deletes what it made.
Exit 0 only if every step passed; the last line is `smoke: pass` or
`smoke: FAIL <step>: <why>`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

import requests
from PIL import Image

from local.app import AppClient, AppError, content_type_of
from local.issuer import mint_app_check_token, mint_token

ROOT = Path(__file__).resolve().parent.parent
SELFIE = ROOT / "assets" / "selfie-astronaut.png"
API_FUNCTIONS = ("uploads", "generate", "edit", "sessions", "account")
AUTH_CHOICES = ("issuer", "token", "password", "anonymous")
IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com/v1"
APP_CHECK_API = "https://firebaseappcheck.googleapis.com/v1"
# The app id the local issuer's App Check tokens name (any project number does locally).
LOCAL_APP_ID = "1:000000000000:android:pixme"
# DELETE account/ works in bounded batches and says complete=false when more is left.
MAX_DELETE_CALLS = 10
PROGRESS_EVERY_S = 5.0


class Failed(Exception):
    """What went wrong in a step, in one line for an operator."""


class StepFailed(Exception):
    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step, self.why = step, why


def say(line: str) -> None:
    print(f"smoke: {line}", flush=True)


def step[T](name: str, action: Callable[[], tuple[T, str]]) -> T:
    """Run one step; print its latency and what it found, or raise StepFailed."""
    started = time.monotonic()
    try:
        value, detail = action()
    except requests.RequestException as err:  # before OSError, its base class
        raise StepFailed(name, f"{type(err).__name__}: {err}") from None
    except (Failed, AppError, OSError) as err:  # OSError: urllib's (the issuer's), timeouts
        raise StepFailed(name, str(err)) from None
    say(f"{name} ok {(time.monotonic() - started) * 1000:.0f} ms: {detail}")
    return value


# --- where the functions are -----------------------------------------------------------


def parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise Failed(f"{what} is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise Failed(f"{what} is not a JSON object")
    return doc


def urls_from_outputs(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The app's function URLs from `terraform output -json` (api_urls in infra/outputs.tf)."""
    api = outputs.get("api_urls")
    value = api.get("value") if isinstance(api, Mapping) else None
    if not isinstance(value, Mapping):
        raise Failed("the terraform outputs have no api_urls (was `terraform apply` run there?)")
    missing = [name for name in API_FUNCTIONS if not isinstance(value.get(name), str)]
    if missing:
        raise Failed(f"api_urls has no {', '.join(missing)}")
    return {name: str(value[name]) for name in API_FUNCTIONS}


def urls_from_env(env: Mapping[str, str]) -> dict[str, str] | None:
    """The URLs from UPLOADS_URL etc. (stack.env's names), or None if none is set."""
    names = {name: f"{name.upper()}_URL" for name in API_FUNCTIONS}
    found = {name: env[var] for name, var in names.items() if env.get(var)}
    if not found:
        return None
    missing = [names[name] for name in API_FUNCTIONS if name not in found]
    if missing:
        raise Failed(f"{', '.join(missing)} not set: set all five *_URL variables, or none")
    return found


def terraform_outputs(chdir: Path) -> dict[str, Any]:
    argv = ["terraform", f"-chdir={chdir}", "output", "-json", "-no-color"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise Failed("terraform is not installed: pass --outputs FILE or set the *_URL variables") from None
    except subprocess.TimeoutExpired:
        raise Failed(f"`{' '.join(argv)}` did not answer in 120 s") from None
    if done.returncode != 0:
        # Terraform draws boxes around its diagnostics; the "Error:" line says what failed.
        lines = [line.strip(" │╷╵") for line in done.stderr.splitlines()]
        errors = [line for line in lines if line.startswith("Error:")] or [line for line in lines if line]
        raise Failed(f"`{' '.join(argv)}` exited {done.returncode}: {errors[0] if errors else 'no message'}")
    return parse_json(done.stdout, "terraform's output")


def resolve_urls(
    outputs: str | None, terraform_dir: Path, env: Mapping[str, str], stdin: IO[str]
) -> tuple[dict[str, str], str]:
    """The function URLs and where they came from."""
    if outputs is not None:
        if outputs == "-":
            return urls_from_outputs(parse_json(stdin.read(), "stdin")), "terraform outputs on stdin"
        try:
            text = Path(outputs).read_text()
        except OSError as err:
            raise Failed(f"cannot read {outputs}: {err.strerror}") from None
        return urls_from_outputs(parse_json(text, outputs)), f"terraform outputs in {outputs}"
    from_env = urls_from_env(env)
    if from_env is not None:
        return from_env, "the *_URL variables"
    return urls_from_outputs(terraform_outputs(terraform_dir)), f"terraform -chdir={terraform_dir} output"


def urls_step(outputs: str | None, terraform_dir: Path, env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    urls, where = resolve_urls(outputs, terraform_dir, env, sys.stdin)
    return urls, f"from {where}: " + ", ".join(f"{name} {url}" for name, url in urls.items())


# --- who is calling --------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    id_token: str
    uid: str
    how: str
    app_check: str | None = None


class TokenSource(Protocol):
    def sign_in(self) -> Identity: ...

    def forget(self, identity: Identity) -> str | None:
        """Remove the user made for this run, if one was; says what was done."""
        ...


@dataclass(frozen=True)
class IssuerTokens:
    """The local stack's issuer: it keeps no users, so a new uid costs nothing.
    Its App Check token is accepted by a stack in any App Check mode."""

    issuer_url: str

    def sign_in(self) -> Identity:
        uid = "smoke-" + secrets.token_hex(6)
        return Identity(
            mint_token(self.issuer_url, uid),
            uid,
            f"local issuer {self.issuer_url}, with App Check",
            mint_app_check_token(self.issuer_url, LOCAL_APP_ID),
        )

    def forget(self, identity: Identity) -> str | None:
        return None


@dataclass(frozen=True)
class GivenToken:
    token: str

    def sign_in(self) -> Identity:
        return Identity(self.token, uid_of(self.token), "PIXME_SMOKE_ID_TOKEN")

    def forget(self, identity: Identity) -> str | None:
        return None


def uid_of(token: str) -> str:
    """The token's `sub`, read without verification: only to name the user in
    the log (the functions verify the token)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, ValueError, KeyError, TypeError):
        return "(unreadable token)"


def google_post(url: str, body: Mapping[str, Any], api_key: str, what: str) -> dict[str, Any]:
    """POST JSON to a Google REST API with an API key. The key goes in a header,
    not the query string, so no error message or log line carries it."""
    resp = requests.post(url, json=dict(body), headers={"X-Goog-Api-Key": api_key}, timeout=30)
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if resp.status_code != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else resp.text[:200]
        raise Failed(f"{what}: {resp.status_code} {message}")
    return answer


def emulated(base: str) -> str:
    return "" if base == IDENTITY_TOOLKIT else f", at {base}"


@dataclass(frozen=True)
class FirebaseAnonymous:
    """A new anonymous Firebase user per run (Identity Toolkit accounts:signUp),
    deleted at the end with its own ID token (accounts:delete). Needs the
    anonymous provider enabled and PIXME_ANONYMOUS=allow; the user gets the
    anonymous tier's quotas, which one generation and one edit fit."""

    api_key: str
    base: str = IDENTITY_TOOLKIT

    def sign_in(self) -> Identity:
        url = f"{self.base}/accounts:signUp"
        answer = google_post(url, {"returnSecureToken": True}, self.api_key, "accounts:signUp")
        how = "a new anonymous Firebase user" + emulated(self.base)
        return Identity(str(answer["idToken"]), str(answer["localId"]), how)

    def forget(self, identity: Identity) -> str | None:
        body = {"idToken": identity.id_token}
        google_post(f"{self.base}/accounts:delete", body, self.api_key, "accounts:delete")
        return f"deleted the anonymous Firebase user {identity.uid}"


@dataclass(frozen=True)
class FirebasePassword:
    """A configured test user (accounts:signInWithPassword); it is kept, its data is not."""

    api_key: str
    email: str
    password: str
    base: str = IDENTITY_TOOLKIT

    def sign_in(self) -> Identity:
        body = {"email": self.email, "password": self.password, "returnSecureToken": True}
        url = f"{self.base}/accounts:signInWithPassword"
        answer = google_post(url, body, self.api_key, "accounts:signInWithPassword")
        how = f"Firebase test user {self.email}" + emulated(self.base)
        return Identity(str(answer["idToken"]), str(answer["localId"]), how)

    def forget(self, identity: Identity) -> str | None:
        return None


@dataclass(frozen=True)
class DebugAppCheck:
    """App Check for a deployment that enforces it: a debug token registered
    for the app in the Firebase console, exchanged for an App Check token.
    App Check puts a small quota on the exchange: one per run."""

    api_key: str
    app_id: str
    debug_token: str

    def __post_init__(self) -> None:
        parts = self.app_id.split(":")
        if len(parts) != 4 or not parts[1].isdigit():
            raise Failed(f"FIREBASE_APP_ID {self.app_id!r} is not 1:<project number>:<platform>:<id>")

    def token(self) -> str:
        # The project is the app id's second field (1:<project number>:<platform>:<id>).
        project = self.app_id.split(":")[1]
        url = f"{APP_CHECK_API}/projects/{project}/apps/{self.app_id}:exchangeDebugToken"
        answer = google_post(url, {"debugToken": self.debug_token}, self.api_key, "exchangeDebugToken")
        return str(answer["token"])


def pick_auth(env: Mapping[str, str]) -> str:
    if env.get("PIXME_SMOKE_AUTH"):
        return env["PIXME_SMOKE_AUTH"]
    for auth, var in (
        ("issuer", "PIXME_ISSUER_URL"),
        ("token", "PIXME_SMOKE_ID_TOKEN"),
        ("password", "PIXME_SMOKE_EMAIL"),
    ):
        if env.get(var):
            return auth
    return "anonymous"


def token_source(auth: str, env: Mapping[str, str]) -> TokenSource:
    def need(var: str) -> str:
        value = env.get(var, "")
        if not value:
            raise Failed(f"--auth {auth} needs {var}")
        return value

    if auth == "issuer":
        return IssuerTokens(need("PIXME_ISSUER_URL"))
    if auth == "token":
        return GivenToken(need("PIXME_SMOKE_ID_TOKEN"))
    # The Firebase SDKs' variable for the Auth emulator, which answers the same REST calls.
    emulator = env.get("FIREBASE_AUTH_EMULATOR_HOST")
    base = f"http://{emulator}/identitytoolkit.googleapis.com/v1" if emulator else IDENTITY_TOOLKIT
    if auth == "password":
        key, email = need("FIREBASE_API_KEY"), need("PIXME_SMOKE_EMAIL")
        return FirebasePassword(key, email, need("PIXME_SMOKE_PASSWORD"), base)
    if auth == "anonymous":
        return FirebaseAnonymous(need("FIREBASE_API_KEY"), base)
    raise Failed(f"unknown --auth {auth!r}; one of {', '.join(AUTH_CHOICES)}")


def app_check_source(env: Mapping[str, str]) -> DebugAppCheck | None:
    debug_token = env.get("PIXME_SMOKE_APP_CHECK_DEBUG_TOKEN", "")
    if not debug_token:
        return None
    for var in ("FIREBASE_APP_ID", "FIREBASE_API_KEY"):
        if not env.get(var):
            raise Failed(f"PIXME_SMOKE_APP_CHECK_DEBUG_TOKEN needs {var}")
    return DebugAppCheck(env["FIREBASE_API_KEY"], env["FIREBASE_APP_ID"], debug_token)


def auth_step(auth: str, env: Mapping[str, str]) -> tuple[tuple[TokenSource, DebugAppCheck | None], str]:
    """The token source and App Check, checked before anyone is signed in."""
    source, app_check = token_source(auth, env), app_check_source(env)
    detail = auth if app_check is None else f"{auth}, App Check debug token of {app_check.app_id}"
    return (source, app_check), detail


def signed_in(source: TokenSource) -> tuple[Identity, str]:
    identity = source.sign_in()
    return identity, f"uid {identity.uid} ({identity.how})"


def with_app_check(identity: Identity, app_check: DebugAppCheck) -> tuple[Identity, str]:
    return replace(identity, app_check=app_check.token()), f"a token for {app_check.app_id}"


# --- the flow --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    selfie: Path
    style: str
    instruction: str
    ingest_timeout_s: float
    poll_s: float
    timeout_s: float


def upload_ticket(client: AppClient, data: bytes) -> tuple[dict[str, Any], str]:
    ticket = client.start_upload(content_type_of(data))
    return ticket, f"upload {ticket['upload_id']}, signed {ticket['method']} until {ticket['expires_at']}"


def put_photo(client: AppClient, ticket: Mapping[str, Any], data: bytes, name: str) -> tuple[None, str]:
    resp = client.put(ticket, data)
    if resp.status_code >= 300:
        # Cloud Storage answers XML (<Code>SignatureDoesNotMatch</Code>...); its start says enough.
        raise Failed(f"PUT to the signed URL: {resp.status_code} {resp.text[:200]}")
    return None, f"{name}, {len(data)} bytes, {ticket['headers'].get('Content-Type')}"


def wait_ingest(client: AppClient, upload_id: str, options: Options) -> tuple[dict[str, Any], str]:
    started = time.monotonic()
    last: dict[str, Any] = {"status": None, "at": started}

    def progress(status: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if status["status"] != last["status"] or now - last["at"] >= PROGRESS_EVERY_S:
            say(f"ingest .. {now - started:.1f} s: {status['status']}")
            last.update(status=status["status"], at=now)

    upload = client.wait_upload(upload_id, options.ingest_timeout_s, options.poll_s, progress)
    if upload["status"] != "ready":
        raise Failed(f"upload rejected: {upload.get('reason')}: {upload.get('message')}")
    face = upload.get("face_box") or {}
    return upload, f"ready, {upload['width']}x{upload['height']}, face score {face.get('score')}"


def new_turn(client: AppClient, function: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A generate or an edit: one model call, billed."""
    answer = client.call("POST", function, "/", dict(body))
    model = answer.get("model_version") or answer.get("model")
    where = f"session {answer['session_id']}, turn {answer['turn_id']}"
    return answer, f"{where}, {model}, {answer['ms']} ms in the function"


def fetch_image(client: AppClient, url: str) -> tuple[None, str]:
    """The image behind a signed URL must decode. The URL is a credential while
    it lasts, so no message prints it."""
    resp = client.http.get(url, timeout=60)
    if resp.status_code != 200:
        raise Failed(f"GET of the signed image URL: {resp.status_code} {resp.text[:200]}")
    try:
        with Image.open(io.BytesIO(resp.content)) as img:
            img.load()
            return None, f"{img.format} {img.width}x{img.height}, {len(resp.content)} bytes"
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise Failed(f"the signed URL's body is not an image: {err}") from None


def delete_account(client: AppClient) -> dict[str, int]:
    totals: dict[str, int] = {}
    for _ in range(MAX_DELETE_CALLS):
        answer = client.call("DELETE", "account", "/")
        for what, count in answer["deleted"].items():
            totals[what] = totals.get(what, 0) + int(count)
        if answer["complete"]:
            return totals
    raise Failed(f"DELETE account/ still incomplete after {MAX_DELETE_CALLS} calls")


def counted(totals: Mapping[str, int]) -> str:
    return ", ".join(f"{what} {count}" for what, count in totals.items())


def delete_step(client: AppClient) -> tuple[None, str]:
    totals = delete_account(client)
    detail = counted(totals)
    if totals.get("uploads", 0) < 1 or totals.get("sessions", 0) < 1:
        raise Failed(f"DELETE account/ removed {detail}: not the upload and session this run made")
    return None, detail


def check_gone(client: AppClient, upload_id: str, session_id: str) -> tuple[None, str]:
    seen = []
    for function, path, code in (
        ("uploads", f"/{upload_id}", "upload_not_found"),
        ("sessions", f"/{session_id}", "session_not_found"),
    ):
        resp = client.request("GET", function, path)
        try:
            got = resp.json().get("error", {}).get("code")
        except ValueError:
            got = None
        if resp.status_code != 404 or got != code:
            raise Failed(f"GET {function}{path} after the deletion: {resp.status_code} {got}, not 404 {code}")
        seen.append(f"{function}{path} 404 {code}")
    export = client.call("GET", "account", "/export")
    if export.get("uploads") or export.get("sessions"):
        raise Failed(f"GET account/export still lists {export.get('uploads')} {export.get('sessions')}")
    return None, ", ".join([*seen, "export empty"])


def run(
    urls: Mapping[str, str], source: TokenSource, app_check: DebugAppCheck | None, options: Options
) -> None:
    """The whole flow; raises StepFailed for the first step that fails."""
    data = options.selfie.read_bytes()
    identity = step("token", lambda: signed_in(source))
    try:
        if app_check is not None and identity.app_check is None:
            identity = step("app-check", lambda: with_app_check(identity, app_check))
        client = AppClient(urls, identity.id_token, options.timeout_s, identity.app_check)
        flow(client, identity, data, options)
    finally:
        forget_user(source, identity)


def flow(client: AppClient, identity: Identity, data: bytes, options: Options) -> None:
    made = False  # whether the run has stored anything that must be deleted
    try:
        ticket = step("ticket", lambda: upload_ticket(client, data))
        made = True
        upload_id = str(ticket["upload_id"])
        step("put", lambda: put_photo(client, ticket, data, options.selfie.name))
        step("ingest", lambda: wait_ingest(client, upload_id, options))
        body = {"upload_id": upload_id, "style": options.style}
        generated = step("generate", lambda: new_turn(client, "generate", body))
        step("generate-image", lambda: fetch_image(client, generated["image_url"]))
        session_id = str(generated["session_id"])
        change = {"session_id": session_id, "instruction": options.instruction}
        edited = step("edit", lambda: new_turn(client, "edit", change))
        step("edit-image", lambda: fetch_image(client, edited["image_url"]))
        step("delete", lambda: delete_step(client))
        made = False
        step("gone", lambda: check_gone(client, upload_id, session_id))
    except StepFailed:
        if made:
            clean_up(client, identity)
        raise


def clean_up(client: AppClient, identity: Identity) -> None:
    """After a failure: delete what the run stored, so a smoke run leaves nothing."""
    try:
        totals = delete_account(client)
    except (Failed, AppError, requests.RequestException) as err:
        say(f"cleanup failed: {err}; data of uid {identity.uid} stays until retention removes it")
        return
    say(f"cleanup ok: deleted {counted(totals)} of uid {identity.uid}")


def forget_user(source: TokenSource, identity: Identity) -> None:
    try:
        done = source.forget(identity)
    except (Failed, requests.RequestException) as err:
        say(f"warning: the test user {identity.uid} was not deleted: {err}")
        return
    if done:
        say(f"forget-user ok: {done}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", help="`terraform output -json` of the deployment, a file or - for stdin")
    parser.add_argument("--terraform-dir", type=Path, default=ROOT / "infra")
    parser.add_argument("--auth", choices=AUTH_CHOICES, help="where the ID token comes from (see above)")
    parser.add_argument("--selfie", type=Path, default=SELFIE)
    parser.add_argument("--style", default="comics")
    parser.add_argument("--instruction", default="add glasses")
    parser.add_argument("--ingest-timeout", type=float, default=120.0, help="seconds to wait for ingest")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between upload status polls")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds for one call (cold starts)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    options = Options(args.selfie, args.style, args.instruction, args.ingest_timeout, args.poll, args.timeout)
    try:
        urls = step("urls", lambda: urls_step(args.outputs, args.terraform_dir, env))
        auth = args.auth or pick_auth(env)
        source, app_check = step("auth", lambda: auth_step(auth, env))
        if not options.selfie.is_file():
            raise StepFailed("selfie", f"{options.selfie} is not a file")
        run(urls, source, app_check, options)
    except StepFailed as err:
        say(f"FAIL {err.step}: {err.why}")
        return 1
    say("pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
