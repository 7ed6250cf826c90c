"""Settings, read once from the environment.

Every variable the functions read is listed in `ENV_VARS` (infra and the
local stack are tested against it). Missing required values fail fast with a
message naming them, at the first request rather than as a vague error later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pixme.errors import ConfigError

GOOGLE_CERTS_URL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
# The current GA image model (gemini-3.1-flash-image was deprecated on 2026-10-06).
DEFAULT_MODEL = "gemini-nano-banana-2.1"
# Image models on Vertex AI are served from the global endpoint.
DEFAULT_LOCATION = "global"
_TRUE = ("1", "true", "yes")

ENV_VARS: tuple[str, ...] = (
    "GOOGLE_CLOUD_PROJECT",
    "PIXME_FIREBASE_PROJECT",
    "PIXME_UPLOADS_BUCKET",
    "PIXME_ASSETS_BUCKET",
    "PIXME_MODEL",
    "PIXME_MODELS",
    "PIXME_MODEL_TIMEOUT_S",
    "PIXME_MODEL_DEADLINE_S",
    "PIXME_RETENTION_DAYS",
    "PIXME_URL_TTL_S",
    "PIXME_MAX_UPLOAD_BYTES",
    "PIXME_MAX_UPLOAD_PIXELS",
    "PIXME_MAX_SIDE",
    "PIXME_MAX_EVENT_AGE_S",
    "PIXME_MAX_TEXT_CHARS",
    "PIXME_AUTH_CERTS_URL",
    "PIXME_SIGNING_SERVICE_ACCOUNT",
    "PIXME_SIGNING_KEY_FILE",
    "PIXME_PUBLIC_STORAGE_URL",
    "PIXME_LOG_FORMAT",
    "PIXME_NO_FACE",
    "PIXME_MULTIPLE_FACES",
    "PIXME_REJECTED_ORIGINALS",
    "PIXME_UPLOAD_URL_TTL_S",
    "PIXME_DAILY_UPLOADS",
    "PIXME_MAX_PENDING_UPLOADS",
    "PIXME_FACE_MIN_SCORE",
    "PIXME_SECOND_FACE_RATIO",
    "PIXME_DAILY_GENERATIONS",
    "PIXME_DAILY_EDITS",
    "PIXME_ANONYMOUS",
    "PIXME_ANONYMOUS_DAILY_GENERATIONS",
    "PIXME_ANONYMOUS_DAILY_EDITS",
    "PIXME_USER_MAX_IN_FLIGHT",
    "PIXME_DAILY_BUDGET",
    "PIXME_BUDGET_CACHE_S",
    "PIXME_APP_CHECK",
    "PIXME_PROJECT_NUMBER",
    "PIXME_APP_CHECK_JWKS_URL",
    "PIXME_CORS_ORIGINS",
    # The model backend, under google-genai's own names.
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
)

# Pillow's own decompression-bomb limit (images.py). PIXME_MAX_UPLOAD_PIXELS
# may not exceed it, so no photo our cap admits ever trips Pillow's.
PIXEL_CEILING = 100_000_000
# Cloud Storage refuses V4 signatures valid for longer than 7 days.
MAX_SIGNED_URL_TTL_S = 604_800
FACE_POLICIES = ("reject", "allow")
ANONYMOUS_POLICIES = ("allow", "deny")
APP_CHECK_MODES = ("off", "monitor", "enforce")
APP_CHECK_JWKS_URL = "https://firebaseappcheck.googleapis.com/v1/jwks"
ORIGINAL_POLICIES = ("delete", "quarantine", "keep")
# An exact web origin: scheme, host and an optional port; no path, no wildcard.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bounded(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _int(env, name, default, minimum=low)
    if value > high:
        raise ConfigError(f"{name} must be <= {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return allowed[0]
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated exact origins; a wildcard or a path would open the API
    to pages nobody listed, so they are refused rather than guessed at."""
    origins = tuple(filter(None, (p.strip() for p in env.get(name, "").split(","))))
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(f"{name}: {origin!r} is not an exact origin like http://127.0.0.1:8080")
    return origins


@dataclass(frozen=True)
class ModelAlias:
    """One entry of the operator's allowlist: `alias=model-id[;cost=N][;requires=claim:value]`.

    `cost` is what one image from it counts against the daily quotas and the
    budget (a Pro image costs about four Flash images); `requires` names a
    custom claim the caller's token must carry to use it (e.g. `plan:pro`).
    """

    alias: str
    model_id: str
    cost: int = 1
    requires: tuple[str, str] | None = None


def _alias(item: str) -> ModelAlias:
    head, *options = (p.strip() for p in item.split(";"))
    alias, sep, model_id = head.partition("=")
    if not sep or not alias.strip() or not model_id.strip():
        raise ConfigError(f"PIXME_MODELS entry {item!r} is not alias=model-id")
    cost, requires = 1, None
    for option in options:
        key, _, value = option.partition("=")
        if key == "cost" and value.isdigit() and int(value) >= 1:
            cost = int(value)
        elif key == "requires" and ":" in value:
            claim, _, wanted = value.partition(":")
            requires = (claim.strip(), wanted.strip())
        else:
            raise ConfigError(f"PIXME_MODELS entry {item!r}: unknown option {option!r}")
    return ModelAlias(alias.strip(), model_id.strip(), cost, requires)


def _models(raw: str, default: str) -> dict[str, ModelAlias]:
    """Parse the operator's allowlist, comma-separated."""
    aliases = [_alias(item) for item in filter(None, (p.strip() for p in raw.split(",")))]
    return {a.alias: a for a in aliases} or {"default": ModelAlias("default", default)}


@dataclass(frozen=True)
class Settings:
    project: str
    uploads_bucket: str
    assets_bucket: str
    model: str = DEFAULT_MODEL
    # alias → model id, and the aliases' costs and required claims.
    models: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, ModelAlias] = field(default_factory=dict)
    model_timeout_s: int = 60
    model_deadline_s: int = 90
    retention_days: int = 30
    url_ttl_s: int = 900
    max_upload_bytes: int = 40 * 1024 * 1024
    # 50 MP admits a 48 MP phone photo (8000x6000) and rejects 200 MP bombs.
    max_upload_pixels: int = 50_000_000
    max_side: int = 1536
    max_event_age_s: int = 3600
    max_text_chars: int = 500
    auth_certs_url: str = GOOGLE_CERTS_URL
    signing_service_account: str = ""
    signing_key_file: str = ""
    public_storage_url: str = ""
    log_format: str = "json"
    # Ingest policies: a photo with no face / with several prominent faces is
    # rejected or let through; a rejected original is deleted, copied to the
    # assets bucket's quarantine/ then deleted, or left in place.
    no_face: str = "reject"
    multiple_faces: str = "reject"
    rejected_originals: str = "delete"
    # Signed uploads: how long the app's PUT URL is valid, and how many
    # uploads one user may start per UTC day / have unfinished at once.
    upload_url_ttl_s: int = 600
    daily_uploads: int = 20
    max_pending_uploads: int = 3
    # The face detector's score (0-100) from which a candidate counts, and how
    # wide (relative to the largest) another face must be to count as a second.
    face_min_score: int = 70
    second_face_ratio: float = 0.5
    # Spend: per-user daily quotas in cost units (anonymous users have their
    # own), a cap on one user's concurrent model calls, and a project-wide
    # daily budget in cost units (overridable at run time: see spending.py).
    daily_generations: int = 20
    daily_edits: int = 100
    anonymous: str = "allow"
    anonymous_daily_generations: int = 3
    anonymous_daily_edits: int = 15
    user_max_in_flight: int = 2
    daily_budget: int = 5000
    budget_cache_s: int = 30
    # App Check: off, monitor (verify and log) or enforce (refuse without).
    app_check: str = "off"
    project_number: str = ""
    app_check_jwks_url: str = APP_CHECK_JWKS_URL
    # The model backend: Vertex AI (project, location, ADC) or the Developer
    # API (a key); either may be pointed at another Gemini-compatible server.
    vertexai: bool = False
    location: str = DEFAULT_LOCATION
    gemini_base_url: str = ""
    vertex_base_url: str = ""
    api_key: str = field(default="", repr=False)
    # The Firebase project whose ID tokens are accepted (their audience and
    # issuer suffix); empty: the GCP project.
    firebase_project: str = ""
    # Web pages (exact origins) that may call the API from a browser; empty:
    # no CORS at all, the cloud's default (the mobile app needs none).
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Settings made in code (tests) may give only `models`: each alias costs 1.
        if self.models and not self.aliases:
            object.__setattr__(self, "aliases", {k: ModelAlias(k, v) for k, v in self.models.items()})

    def alias(self, name: str | None) -> ModelAlias:
        """The allowlist entry for `name` (None: the default model)."""
        if name is None:
            found = next((a for a in self.aliases.values() if a.model_id == self.model), None)
            return found or ModelAlias("default", self.model)
        return self.aliases[name]

    def cost_of(self, model_id: str) -> int:
        """What an image from `model_id` counts (the highest alias naming it)."""
        return max((a.cost for a in self.aliases.values() if a.model_id == model_id), default=1)

    def model_backend_problem(self) -> str | None:
        """What to set for the model client to work, or None when it can be built.

        Checked when the model client is built, not in from_env: functions
        that never call the model must not fail over a model setting.
        """
        if self.vertexai:
            if not self.project:
                return "Vertex AI mode (GOOGLE_GENAI_USE_VERTEXAI=true) needs GOOGLE_CLOUD_PROJECT"
            return None
        if not self.api_key:
            return (
                "the Gemini Developer API needs GEMINI_API_KEY or GOOGLE_API_KEY;"
                " or set GOOGLE_GENAI_USE_VERTEXAI=true (with GOOGLE_CLOUD_PROJECT) for Vertex AI"
            )
        return None

    @property
    def token_audience(self) -> str:
        """The Firebase project ID tokens must be issued for."""
        return self.firebase_project or self.project

    @property
    def issuer(self) -> str:
        return f"https://securetoken.google.com/{self.token_audience}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [
            n
            for n in ("GOOGLE_CLOUD_PROJECT", "PIXME_UPLOADS_BUCKET", "PIXME_ASSETS_BUCKET")
            if not env.get(n, "").strip()
        ]
        if missing:
            raise ConfigError("missing required settings: " + ", ".join(missing))
        model = env.get("PIXME_MODEL", "").strip() or DEFAULT_MODEL
        timeout = _int(env, "PIXME_MODEL_TIMEOUT_S", 60)
        deadline = _int(env, "PIXME_MODEL_DEADLINE_S", max(90, timeout))
        if deadline < timeout:
            raise ConfigError("PIXME_MODEL_DEADLINE_S must be >= PIXME_MODEL_TIMEOUT_S")
        aliases = _models(env.get("PIXME_MODELS", ""), model)
        max_pixels = _int(env, "PIXME_MAX_UPLOAD_PIXELS", 50_000_000)
        if max_pixels > PIXEL_CEILING:
            raise ConfigError(f"PIXME_MAX_UPLOAD_PIXELS must be <= {PIXEL_CEILING}, got {max_pixels}")
        app_check = _choice(env, "PIXME_APP_CHECK", APP_CHECK_MODES)
        project_number = env.get("PIXME_PROJECT_NUMBER", "").strip()
        if app_check != "off" and not project_number.isdigit():
            raise ConfigError("PIXME_APP_CHECK needs PIXME_PROJECT_NUMBER (the project's number, digits)")
        return cls(
            project=env["GOOGLE_CLOUD_PROJECT"].strip(),
            uploads_bucket=env["PIXME_UPLOADS_BUCKET"].strip(),
            assets_bucket=env["PIXME_ASSETS_BUCKET"].strip(),
            model=model,
            models={k: a.model_id for k, a in aliases.items()},
            aliases=aliases,
            model_timeout_s=timeout,
            model_deadline_s=deadline,
            retention_days=_int(env, "PIXME_RETENTION_DAYS", 30),
            url_ttl_s=_int(env, "PIXME_URL_TTL_S", 900, minimum=60),
            max_upload_bytes=_int(env, "PIXME_MAX_UPLOAD_BYTES", 40 * 1024 * 1024),
            max_upload_pixels=max_pixels,
            max_side=_int(env, "PIXME_MAX_SIDE", 1536, minimum=256),
            max_event_age_s=_int(env, "PIXME_MAX_EVENT_AGE_S", 3600),
            max_text_chars=_int(env, "PIXME_MAX_TEXT_CHARS", 500),
            auth_certs_url=env.get("PIXME_AUTH_CERTS_URL", "").strip() or GOOGLE_CERTS_URL,
            signing_service_account=env.get("PIXME_SIGNING_SERVICE_ACCOUNT", "").strip(),
            signing_key_file=env.get("PIXME_SIGNING_KEY_FILE", "").strip(),
            public_storage_url=env.get("PIXME_PUBLIC_STORAGE_URL", "").strip(),
            log_format=env.get("PIXME_LOG_FORMAT", "").strip() or "json",
            no_face=_choice(env, "PIXME_NO_FACE", FACE_POLICIES),
            multiple_faces=_choice(env, "PIXME_MULTIPLE_FACES", FACE_POLICIES),
            rejected_originals=_choice(env, "PIXME_REJECTED_ORIGINALS", ORIGINAL_POLICIES),
            upload_url_ttl_s=_bounded(env, "PIXME_UPLOAD_URL_TTL_S", 600, 60, MAX_SIGNED_URL_TTL_S),
            daily_uploads=_int(env, "PIXME_DAILY_UPLOADS", 20),
            max_pending_uploads=_int(env, "PIXME_MAX_PENDING_UPLOADS", 3),
            face_min_score=_bounded(env, "PIXME_FACE_MIN_SCORE", 70, 1, 100),
            second_face_ratio=_float(env, "PIXME_SECOND_FACE_RATIO", 0.5, 0.05, 1.0),
            daily_generations=_int(env, "PIXME_DAILY_GENERATIONS", 20, minimum=0),
            daily_edits=_int(env, "PIXME_DAILY_EDITS", 100, minimum=0),
            anonymous=_choice(env, "PIXME_ANONYMOUS", ANONYMOUS_POLICIES),
            anonymous_daily_generations=_int(env, "PIXME_ANONYMOUS_DAILY_GENERATIONS", 3, minimum=0),
            anonymous_daily_edits=_int(env, "PIXME_ANONYMOUS_DAILY_EDITS", 15, minimum=0),
            user_max_in_flight=_int(env, "PIXME_USER_MAX_IN_FLIGHT", 2),
            daily_budget=_int(env, "PIXME_DAILY_BUDGET", 5000, minimum=0),
            budget_cache_s=_int(env, "PIXME_BUDGET_CACHE_S", 30, minimum=0),
            app_check=app_check,
            project_number=project_number,
            app_check_jwks_url=env.get("PIXME_APP_CHECK_JWKS_URL", "").strip() or APP_CHECK_JWKS_URL,
            vertexai=env.get("GOOGLE_GENAI_USE_VERTEXAI", "").strip().lower() in _TRUE,
            location=env.get("GOOGLE_CLOUD_LOCATION", "").strip() or DEFAULT_LOCATION,
            gemini_base_url=env.get("GOOGLE_GEMINI_BASE_URL", "").strip(),
            vertex_base_url=env.get("GOOGLE_VERTEX_BASE_URL", "").strip(),
            # GOOGLE_API_KEY wins when both are set, as in the SDK.
            api_key=(env.get("GOOGLE_API_KEY", "").strip() or env.get("GEMINI_API_KEY", "").strip()),
            firebase_project=env.get("PIXME_FIREBASE_PROJECT", "").strip(),
            cors_origins=_origins(env, "PIXME_CORS_ORIGINS"),
        )
