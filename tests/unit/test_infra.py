"""What infra/ declares, checked offline against what the system needs.

`terraform validate` cannot run without downloading the provider, so these
tests read the .tf files with python-hcl2 and check the properties that
matter: which functions exist and how they are triggered, who may invoke
them, which roles exist at which scope, and that the environment the
functions get is the one the code reads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FUNCTIONS_DIR = ROOT / "functions"

FUNCTIONS = {"on_upload", "generate", "edit", "sessions", "uploads", "account", "cleanup"}
PUBLIC_FUNCTIONS = {"generate", "edit", "sessions", "uploads", "account"}
# Every function gets these; the signing account only the functions that sign.
REQUIRED_ENV = {
    "GOOGLE_CLOUD_PROJECT",
    "PIXME_UPLOADS_BUCKET",
    "PIXME_ASSETS_BUCKET",
    "PIXME_MODEL",
    "PIXME_MODELS",
    "PIXME_RETENTION_DAYS",
    "PIXME_URL_TTL_S",
    "PIXME_MODEL_TIMEOUT_S",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_LOCATION",
}
REQUIRED_APIS = (
    "cloudfunctions", "run", "eventarc", "pubsub", "storage", "firestore",
    "cloudscheduler", "aiplatform", "iamcredentials", "cloudbuild", "artifactregistry",
    "firebase", "firebaserules", "firebasestorage", "logging", "monitoring",
)  # fmt: skip
FORBIDDEN_ROLES = {"roles/owner", "roles/editor", "roles/storage.admin", "roles/storage.objectAdmin"}
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
SIGNING_ACCOUNT = "PIXME_SIGNING_SERVICE_ACCOUNT"

# The object permissions that matter here, per predefined role.
GET, LIST, CREATE, UPDATE, DELETE = (
    "storage.objects.get", "storage.objects.list", "storage.objects.create",
    "storage.objects.update", "storage.objects.delete",
)  # fmt: skip
PREDEFINED_OBJECT_ROLES = {
    "roles/storage.objectViewer": {GET, LIST},
    "roles/storage.objectCreator": {CREATE},
    "roles/storage.objectUser": {GET, LIST, CREATE, UPDATE, DELETE},
}
# What each runtime identity may do in each bucket, and nothing more.
BUCKET_ACCESS = {
    # Reads the raw upload and deletes it; never writes there (it would re-trigger itself).
    ("ingest", "uploads"): {GET, LIST, DELETE},
    # Writes (and overwrites) what it makes, removes it after a failure; never reads it.
    ("ingest", "assets"): {LIST, CREATE, DELETE},
    ("api", "assets"): {GET, LIST, CREATE, DELETE},
    # Signs read URLs for avatars; DELETE /{session_id} removes a session's avatars. No writing.
    ("sessions", "assets"): {GET, LIST, DELETE},
    # Signs create-only PUT URLs (a signed URL acts with the signer's rights); deletes uploads.
    ("uploads", "uploads"): {CREATE, DELETE},
    ("uploads", "assets"): {LIST, DELETE},
    # Deletes everything of a user: lists and deletes raw uploads (never reads
    # them); lists, reads (signs export URLs) and deletes assets. Never writes.
    ("account", "uploads"): {LIST, DELETE},
    ("account", "assets"): {GET, LIST, DELETE},
    ("cleanup", "uploads"): {LIST, DELETE},
    ("cleanup", "assets"): {LIST, DELETE},
}
INVOKER_RESOURCES = (
    "google_cloud_run_service_iam_member",
    "google_cloud_run_v2_service_iam_member",
    "google_cloudfunctions2_function_iam_member",
)
FINALIZED = "google.cloud.storage.object.v1.finalized"
# The custom roles: one permission each, granted only on buckets.
CUSTOM_ROLES = {"object_deleter": {DELETE}, "object_lister": {LIST}}
# The functions that verify Firebase ID tokens, and the runtime accounts that sign URLs.
TOKEN_CHECKING = {"generate", "edit", "sessions", "uploads", "account"}
SIGNERS = {"api", "sessions", "uploads", "account"}
MODEL_CALLER = "${google_project_iam_custom_role.model_caller.name}"


# --- reading HCL -----------------------------------------------------------


def unquote(value: Any) -> Any:
    """Plain values from python-hcl2 8.x output.

    It keeps string literals quoted ('"x"') and adds bookkeeping keys such as
    __is_block__ and __comments__; strip both.
    """
    if isinstance(value, dict):
        return {
            unquote(k): unquote(v) for k, v in value.items() if not (k.startswith("__") and k.endswith("__"))
        }
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


class Config:
    """All infra/*.tf files merged, as plain Python values."""

    def __init__(self, directory: Path) -> None:
        self.blocks: dict[str, list[Any]] = {}
        for path in sorted(directory.glob("*.tf")):
            with path.open() as f:
                parsed = unquote(hcl2.load(f))
            for kind, entries in parsed.items():
                self.blocks.setdefault(kind, []).extend(entries)

    def _named(self, kind: str, type_: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for entry in self.blocks.get(kind, []):
            for name, body in entry.get(type_, {}).items():
                found[name] = body
        return found

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return self._named("resource", type_)

    def data(self, type_: str) -> dict[str, dict[str, Any]]:
        return self._named("data", type_)

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        found = self.resources(type_)
        assert name in found, f"missing resource {type_}.{name}"
        return found[name]

    def resource_types(self) -> set[str]:
        return {type_ for entry in self.blocks.get("resource", []) for type_ in entry}

    @property
    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for entry in self.blocks.get("locals", []):
            merged.update(entry)
        return merged

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for entry in self.blocks.get("variable", []):
            merged.update(entry)
        return merged


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a parsed value (keys included)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block"
    first = blocks[0]
    assert isinstance(first, dict)
    return first


def local_name(expression: str) -> str:
    match = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    assert match, f"expected a plain local reference, got {expression!r}"
    return match.group(1)


def variable_default(type_expression: str, attribute: str) -> str:
    """The default of `attribute = optional(type, default)` in an object type."""
    match = re.search(rf"\b{attribute}\s*=\s*optional\(\w+,\s*([^)]*)\)", type_expression)
    assert match, f"{attribute} has no optional() default"
    return match.group(1).strip().strip('"')


@pytest.fixture(scope="module")
def tf() -> Config:
    return Config(INFRA)


@pytest.fixture(scope="module")
def specs(tf: Config) -> dict[str, dict[str, Any]]:
    value = tf.locals["function_specs"]
    assert isinstance(value, dict)
    return value


def project_roles(tf: Config, conditional: bool = True) -> list[str]:
    """Roles granted at project level, resolving for_each over a local map
    (without the grants limited by an IAM condition unless `conditional`)."""
    roles: list[str] = []
    for name, body in tf.resources("google_project_iam_member").items():
        if "condition" in body and not conditional:
            continue
        role = body["role"]
        if role == "${each.value.role}":
            entries = tf.locals[local_name(body["for_each"])]
            roles.extend(entry["role"] for entry in entries.values())
        else:
            assert not role.startswith("${"), f"cannot resolve the role of {name}: {role}"
            roles.append(role)
    return roles


def invoker_grants(tf: Config) -> list[tuple[str, dict[str, Any]]]:
    grants = []
    for type_ in INVOKER_RESOURCES:
        for name, body in tf.resources(type_).items():
            if body["role"] in ("roles/run.invoker", "roles/cloudfunctions.invoker"):
                grants.append((name, body))
    return grants


def function_envs(tf: Config) -> dict[str, dict[str, str]]:
    """The environment of each function: the common settings, its shared
    groups in order, then its own (the same merge main.tf makes)."""
    expression = " ".join(tf.locals["function_env"].split())
    assert "for name in keys(local.function_specs) : name => merge(" in expression
    groups = "merge([for group in local.function_env_groups[name] : local.shared_env[group]] ...)"
    assert f"local.common_env, {groups}, local.function_env_extra[name]" in expression, expression
    common = tf.locals["common_env"]
    shared = tf.locals["shared_env"]
    groups_of = tf.locals["function_env_groups"]
    extra = tf.locals["function_env_extra"]
    functions = set(tf.locals["function_specs"])
    assert set(extra) == functions, "every function needs an entry, even an empty one"
    assert set(groups_of) == functions, "every function needs a group list, even an empty one"
    envs = {}
    for name, own in extra.items():
        env = dict(common)
        for group in groups_of[name]:
            env.update(shared[group])
        env.update(own)
        envs[name] = env
    return envs


def role_permissions(tf: Config, role: str) -> set[str]:
    if role in PREDEFINED_OBJECT_ROLES:
        return PREDEFINED_OBJECT_ROLES[role]
    custom = local_name(role)
    assert custom in CUSTOM_ROLES, f"unexpected bucket role {role}"
    assert tf.locals[custom] == f"${{google_project_iam_custom_role.{custom}.name}}"
    return set(tf.resource("google_project_iam_custom_role", custom)["permissions"])


def bucket_grants(tf: Config) -> list[dict[str, Any]]:
    grants = tf.resource("google_storage_bucket_iam_member", "buckets")
    assert grants["role"] == "${each.value.role}"
    entries = tf.locals[local_name(grants["for_each"])]
    assert isinstance(entries, dict)
    return list(entries.values())


def bucket_access(tf: Config) -> dict[tuple[str, str], set[str]]:
    """Object permissions per (identity, bucket), from every bucket grant."""
    access: dict[tuple[str, str], set[str]] = {}
    for entry in bucket_grants(tf):
        key = (entry["identity"], entry["bucket"])
        access.setdefault(key, set()).update(role_permissions(tf, entry["role"]))
    return access


def sa_member(identity: str) -> str:
    return f'serviceAccount:${{google_service_account.sa["{identity}"].email}}'


def rules_statements(path: Path) -> tuple[str, list[str]]:
    """A rules file without comments, and its allow statements (whitespace collapsed)."""
    text = re.sub(r"/\*.*?\*/", " ", path.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    statements = [" ".join(m.split()) for m in re.findall(r"\ballow\b([^;]*);", text)]
    assert len(re.findall(r"\ballow\b", text)) == len(statements), f"{path.name}: an allow without ';'"
    return text, statements


# --- functions and triggers ------------------------------------------------


def test_every_function_exists_with_its_entry_point(tf: Config, specs: dict[str, Any]) -> None:
    assert set(specs) == FUNCTIONS
    assert {name: s["entry_point"] for name, s in specs.items()} == {n: n for n in FUNCTIONS}
    assert "local.function_specs" in tf.locals["functions"]

    fn = tf.resource("google_cloudfunctions2_function", "fn")
    assert fn["for_each"] == "${local.functions}"
    build = block(fn, "build_config")
    assert build["entry_point"] == "${each.value.entry_point}"
    assert build["runtime"] == "python312"
    storage_source = block(block(build, "source"), "storage_source")
    assert storage_source["object"] == "${google_storage_bucket_object.functions_source.name}"


def test_source_archive_is_named_by_its_hash(tf: Config) -> None:
    archive = tf.data("archive_file")["functions"]
    assert archive["source_dir"].endswith("/../functions")
    assert {"**/__pycache__", "tests"} <= set(archive["excludes"])
    obj = tf.resource("google_storage_bucket_object", "functions_source")
    assert "data.archive_file.functions.output_md5" in obj["name"]


def test_on_upload_is_triggered_by_finalized_objects_in_the_uploads_bucket(
    tf: Config, specs: dict[str, Any]
) -> None:
    assert {name for name, s in specs.items() if s["trigger"] == "storage"} == {"on_upload"}
    assert all(s["trigger"] == "https" for name, s in specs.items() if name != "on_upload")

    fn = tf.resource("google_cloudfunctions2_function", "fn")
    dynamics = [d["event_trigger"] for d in fn.get("dynamic", []) if "event_trigger" in d]
    assert len(dynamics) == 1 and "event_trigger" not in fn
    trigger = dynamics[0]
    assert 'each.value.trigger == "storage"' in trigger["for_each"]
    content = block(trigger, "content")
    assert content["event_type"] == FINALIZED
    assert content["retry_policy"] == "RETRY_POLICY_RETRY"
    assert content["service_account_email"] == '${google_service_account.sa["trigger"].email}'
    assert content["event_filters"] == [
        {"attribute": "bucket", "value": "${google_storage_bucket.uploads.name}"}
    ]


def test_storage_events_can_reach_eventarc(tf: Config) -> None:
    entries = tf.locals["project_roles"].values()
    publishers = [e["member"] for e in entries if e["role"] == "roles/pubsub.publisher"]
    assert publishers == ["serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"]
    receivers = [e["member"] for e in entries if e["role"] == "roles/eventarc.eventReceiver"]
    assert receivers == ['serviceAccount:${google_service_account.sa["trigger"].email}']


# --- who may invoke what ---------------------------------------------------


def test_only_the_app_endpoints_are_public(tf: Config, specs: dict[str, Any]) -> None:
    assert {name for name, s in specs.items() if s["public"]} == PUBLIC_FUNCTIONS

    public = [
        (name, body)
        for name, body in invoker_grants(tf)
        if body["member"] in ("allUsers", "allAuthenticatedUsers")
    ]
    assert len(public) == 1, "one resource grants public invocation"
    body = public[0][1]
    assert body["member"] == "allUsers" and body["role"] == "roles/run.invoker"
    assert "local.functions" in body["for_each"] and "if f.public" in body["for_each"]
    assert body["service"] == "${google_cloudfunctions2_function.fn[each.key].name}"

    # No other place in the configuration names the public principals.
    mentions = [s for s in strings(tf.blocks) if "allUsers" in s or "allAuthenticatedUsers" in s]
    assert mentions == ["allUsers"]


def test_cleanup_is_invoked_only_by_the_scheduler(tf: Config, specs: dict[str, Any]) -> None:
    assert not specs["cleanup"]["public"]
    assert specs["cleanup"]["ingress"] == "ALLOW_INTERNAL_ONLY"

    targeted: set[tuple[str, str]] = set()
    for name, body in invoker_grants(tf):
        match = re.search(r'fn\["(\w+)"\]', body.get("service", body.get("name", "")))
        if match:
            targeted.add((match.group(1), body["member"]))
        else:
            assert "if f.public" in body["for_each"], f"{name} grants invocation to unclear targets"
    assert targeted == {
        ("cleanup", 'serviceAccount:${google_service_account.sa["scheduler"].email}'),
        ("on_upload", 'serviceAccount:${google_service_account.sa["trigger"].email}'),
    }

    job = tf.resource("google_cloud_scheduler_job", "cleanup")
    target = block(job, "http_target")
    assert target["uri"] == "${local.cleanup_url}"
    assert 'fn["cleanup"].service_config[0].uri' in tf.locals["cleanup_url"]
    oidc = block(target, "oidc_token")
    assert oidc["service_account_email"] == '${google_service_account.sa["scheduler"].email}'
    assert oidc["audience"] == "${local.cleanup_url}"


def test_no_project_wide_invoker(tf: Config) -> None:
    roles = project_roles(tf)
    assert "roles/run.invoker" not in roles
    assert "roles/cloudfunctions.invoker" not in roles


# --- roles -----------------------------------------------------------------


def test_no_broad_role_anywhere(tf: Config) -> None:
    roles = {m for s in strings(tf.blocks) for m in re.findall(r"roles/[A-Za-z.]+", s)}
    assert roles, "the configuration grants roles"
    assert not roles & FORBIDDEN_ROLES


def test_no_authoritative_project_iam(tf: Config) -> None:
    # Bindings and policies replace grants made by others in the project.
    assert not tf.resource_types() & {"google_project_iam_binding", "google_project_iam_policy"}


def test_no_storage_role_at_project_level(tf: Config) -> None:
    roles = project_roles(tf, conditional=False)
    assert roles
    assert not [r for r in roles if r.startswith("roles/storage.")]
    # The one conditional grant is the build's read of Cloud Functions' own
    # source bucket (test_the_build_reads_only_the_function_sources_bucket).
    conditional = [n for n, b in tf.resources("google_project_iam_member").items() if "condition" in b]
    assert conditional == ["build_reads_function_sources"]


def test_storage_roles_are_bucket_scoped_object_roles(tf: Config) -> None:
    entries = bucket_grants(tf)
    custom = {f"${{local.{name}}}" for name in CUSTOM_ROLES}
    assert {e["role"] for e in entries} <= set(PREDEFINED_OBJECT_ROLES) | custom
    assert {e["bucket"] for e in entries} == {"uploads", "assets"}
    assert tf.locals["buckets"] == {
        "uploads": "${google_storage_bucket.uploads.name}",
        "assets": "${google_storage_bucket.assets.name}",
    }
    # The custom roles delete or list objects, each doing nothing else
    # (model_caller is for Vertex AI, granted on the project: see its own test).
    assert tf.resources("google_project_iam_custom_role").keys() == CUSTOM_ROLES.keys() | {"model_caller"}
    for name, permissions in CUSTOM_ROLES.items():
        assert role_permissions(tf, f"${{local.{name}}}") == permissions, name


def test_each_identity_gets_exactly_its_bucket_access(tf: Config) -> None:
    assert bucket_access(tf) == BUCKET_ACCESS


def test_no_one_but_our_runtime_accounts_has_bucket_access(tf: Config) -> None:
    # The app uses signed URLs only: no grant to users, groups, allUsers or
    # Firebase principals, and no authoritative bucket policy that could add one.
    assert not tf.resource_types() & {"google_storage_bucket_iam_binding", "google_storage_bucket_iam_policy"}
    assert tf.resources("google_storage_bucket_iam_member").keys() == {
        "buckets", "vertex_reads_assets", "build_reads_source",
    }  # fmt: skip
    # Besides our runtimes, only Vertex AI's service agent, reading the assets
    # it is sent by gs:// reference.
    vertex = tf.resource("google_storage_bucket_iam_member", "vertex_reads_assets")
    assert vertex["bucket"] == "${google_storage_bucket.assets.name}"
    assert vertex["role"] == "roles/storage.objectViewer"
    assert vertex["member"] == "serviceAccount:${google_project_service_identity.aiplatform.email}"
    agent = tf.resource("google_project_service_identity", "aiplatform")
    assert agent["service"] == "aiplatform.googleapis.com"
    grants = tf.resource("google_storage_bucket_iam_member", "buckets")
    assert grants["member"] == "serviceAccount:${google_service_account.sa[each.value.identity].email}"
    runtimes = {s["identity"] for s in tf.locals["function_specs"].values()}
    assert {e["identity"] for e in bucket_grants(tf)} <= runtimes


def test_on_upload_reads_and_deletes_in_the_uploads_bucket_but_never_writes(tf: Config) -> None:
    access = bucket_access(tf)[("ingest", "uploads")]
    assert {GET, DELETE} <= access
    assert not access & {CREATE, UPDATE}


def test_signers_sign_only_as_themselves(tf: Config, specs: dict[str, Any]) -> None:
    grants = tf.resources("google_service_account_iam_member")
    creators = {name: g for name, g in grants.items() if g["role"] == TOKEN_CREATOR}
    # The Pub/Sub agent mints the trigger's push tokens (test_first_apply_...).
    assert creators.pop("pubsub_agent_signs_as_trigger")["service_account_id"] == (
        '${google_service_account.sa["trigger"].name}'
    )
    assert creators == {
        "signs_as_itself": {
            "for_each": "${local.signing_identities}",
            "service_account_id": "${google_service_account.sa[each.key].name}",
            "role": TOKEN_CREATOR,
            "member": "serviceAccount:${google_service_account.sa[each.key].email}",
        }
    }
    listed = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", tf.locals["signing_identities"])
    assert listed, tf.locals["signing_identities"]
    assert {item.strip().strip('"') for item in listed.group(1).split(",")} == SIGNERS
    assert TOKEN_CREATOR not in project_roles(tf)

    # A function that signs names its own runtime account, which holds the
    # role on itself; no function names another's.
    signers = set()
    for name, env in function_envs(tf).items():
        if SIGNING_ACCOUNT in env:
            identity = specs[name]["identity"]
            assert env[SIGNING_ACCOUNT] == f'${{google_service_account.sa["{identity}"].email}}', name
            signers.add(identity)
    assert signers == SIGNERS

    # Renaming the api's grant moved it instead of revoking and re-granting it.
    moved = {
        "from": "${google_service_account_iam_member.api_signs_as_itself}",
        "to": '${google_service_account_iam_member.signs_as_itself["api"]}',
    }
    assert moved in tf.blocks["moved"]


def test_runtime_identities_are_separate(tf: Config, specs: dict[str, Any]) -> None:
    assert {name: s["identity"] for name, s in specs.items()} == {
        "on_upload": "ingest",
        "generate": "api",
        "edit": "api",
        "sessions": "sessions",
        "uploads": "uploads",
        "account": "account",
        "cleanup": "cleanup",
    }
    runtimes = {"ingest", "api", "sessions", "uploads", "account", "cleanup"}
    assert set(tf.locals["service_accounts"]) == runtimes | {"trigger", "scheduler", "build"}
    service = block(tf.resource("google_cloudfunctions2_function", "fn"), "service_config")
    assert service["service_account_email"] == "${google_service_account.sa[each.value.identity].email}"
    vertex = [e for e in tf.locals["project_roles"].values() if e["role"] == MODEL_CALLER]
    assert [e["member"] for e in vertex] == ['serviceAccount:${google_service_account.sa["api"].email}']


def test_uploads_is_public_https_with_its_own_narrow_identity(tf: Config, specs: dict[str, Any]) -> None:
    spec = specs["uploads"]
    assert spec["entry_point"] == "uploads"
    assert spec["trigger"] == "https" and spec["public"] is True and spec["ingress"] == "ALLOW_ALL"
    assert spec["calls_model"] is False
    # Its own service account, shared with no other function.
    assert spec["identity"] == "uploads"
    assert [name for name, s in specs.items() if s["identity"] == "uploads"] == ["uploads"]

    # Project level: Firestore only; no storage role, no Vertex AI.
    member = sa_member("uploads")
    project = [e["role"] for e in tf.locals["project_roles"].values() if e["member"] == member]
    assert project == ["roles/datastore.user"]
    # Buckets: create and delete in uploads, read and delete in assets; no admin role.
    roles = {e["role"] for e in bucket_grants(tf) if e["identity"] == "uploads"}
    assert roles == {"roles/storage.objectCreator", "${local.object_lister}", "${local.object_deleter}"}
    assert not roles & FORBIDDEN_ROLES
    assert not bucket_access(tf)[("uploads", "assets")] & {CREATE, UPDATE}


def project_roles_of(tf: Config, identity: str) -> list[str]:
    member = sa_member(identity)
    return [e["role"] for e in tf.locals["project_roles"].values() if e["member"] == member]


def test_account_is_public_https_with_its_own_narrow_identity(tf: Config, specs: dict[str, Any]) -> None:
    spec = specs["account"]
    assert spec["entry_point"] == "account"
    assert spec["trigger"] == "https" and spec["public"] is True and spec["ingress"] == "ALLOW_ALL"
    assert spec["calls_model"] is False
    assert spec["identity"] == "account"
    assert [name for name, s in specs.items() if s["identity"] == "account"] == ["account"]
    assert "account" in tf.locals["service_accounts"]

    # Firestore (every document of the caller, read and delete); no Vertex AI.
    assert project_roles_of(tf, "account") == ["roles/datastore.user"]
    # Storage: exactly list + delete on uploads, list + get + delete on assets.
    access = bucket_access(tf)
    assert access[("account", "uploads")] == {LIST, DELETE}
    assert access[("account", "assets")] == {GET, LIST, DELETE}
    assert not (access[("account", "uploads")] | access[("account", "assets")]) & {CREATE, UPDATE}
    roles = {e["role"] for e in bucket_grants(tf) if e["identity"] == "account"}
    assert roles == {"roles/storage.objectViewer", "${local.object_deleter}", "${local.object_lister}"}
    # Signs its export URLs as itself (test_signers_sign_only_as_themselves
    # checks the grant is on its own account only).
    assert "account" in SIGNERS
    assert function_envs(tf)["account"][SIGNING_ACCOUNT] == '${google_service_account.sa["account"].email}'


def test_sessions_deletes_avatars_but_cannot_write(tf: Config, specs: dict[str, Any]) -> None:
    # DELETE /{session_id} removes avatars/{uid}/{session_id}/: delete in the
    # assets bucket, and read (it signs read URLs) - but no create, which the
    # API's objectUser would also give, hence its own account.
    assert specs["sessions"]["identity"] == "sessions"
    assert [name for name, s in specs.items() if s["identity"] == "sessions"] == ["sessions"]
    access = bucket_access(tf)
    assert access[("sessions", "assets")] == {GET, LIST, DELETE}
    assert ("sessions", "uploads") not in access
    roles = {e["role"] for e in bucket_grants(tf) if e["identity"] == "sessions"}
    assert roles == {"roles/storage.objectViewer", "${local.object_deleter}"}
    assert project_roles_of(tf, "sessions") == ["roles/datastore.user"]


# --- environment -----------------------------------------------------------


def test_every_function_gets_the_pixme_environment(tf: Config) -> None:
    service = block(tf.resource("google_cloudfunctions2_function", "fn"), "service_config")
    assert service["environment_variables"] == (
        "${merge(local.function_env[each.key], each.value.concurrency > 1 ? "
        "{THREADS = tostring(each.value.concurrency)} : {})}"
    )
    # The Functions Framework's gunicorn threads match the instance's concurrency.
    assert service["max_instance_request_concurrency"] == "${each.value.concurrency}"
    envs = function_envs(tf)
    assert set(envs) == FUNCTIONS
    for name, env in envs.items():
        assert set(env) >= REQUIRED_ENV, name
        assert env["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
        assert env["PIXME_UPLOADS_BUCKET"] == "${google_storage_bucket.uploads.name}"
        assert env["PIXME_ASSETS_BUCKET"] == "${google_storage_bucket.assets.name}"
    signing = {name for name, env in envs.items() if SIGNING_ACCOUNT in env}
    assert signing == {"generate", "edit", "sessions", "uploads", "account"}

    app_type = tf.variables["app"]["type"]
    assert variable_default(app_type, "model") == "gemini-nano-banana-2.1"
    assert variable_default(app_type, "retention_days") == "30"
    assert variable_default(app_type, "url_ttl_s") == "900"
    assert variable_default(app_type, "model_timeout_s") == "60"
    assert variable_default(app_type, "vertex_location") == "global"


# Settings only some functions get: which ones (the ones whose code reads
# it), and the value infra sets. A function that reports a limit (account's
# /usage) gets it as well as the function that enforces it.
QUOTA_USERS = {"generate", "edit", "account"}
SCOPED_SETTINGS: dict[str, tuple[set[str], str]] = {
    "PIXME_UPLOAD_URL_TTL_S": ({"uploads"}, "${tostring(var.app.upload_url_ttl_s)}"),
    "PIXME_DAILY_UPLOADS": ({"uploads", "account"}, "${tostring(var.app.daily_uploads)}"),
    "PIXME_MAX_PENDING_UPLOADS": ({"uploads", "account"}, "${tostring(var.app.max_pending_uploads)}"),
    "PIXME_FACE_MIN_SCORE": ({"on_upload"}, "${tostring(var.app.face_min_score)}"),
    "PIXME_SECOND_FACE_RATIO": ({"on_upload"}, "${tostring(var.app.second_face_ratio)}"),
    "PIXME_NO_FACE": ({"on_upload"}, "reject"),
    "PIXME_MULTIPLE_FACES": ({"on_upload"}, "reject"),
    "PIXME_REJECTED_ORIGINALS": ({"on_upload"}, "delete"),
    "PIXME_DAILY_GENERATIONS": (QUOTA_USERS, "${tostring(var.app.daily_generations)}"),
    "PIXME_DAILY_EDITS": (QUOTA_USERS, "${tostring(var.app.daily_edits)}"),
    "PIXME_ANONYMOUS_DAILY_GENERATIONS": (QUOTA_USERS, "${tostring(var.app.anonymous_daily_generations)}"),
    "PIXME_ANONYMOUS_DAILY_EDITS": (QUOTA_USERS, "${tostring(var.app.anonymous_daily_edits)}"),
    "PIXME_USER_MAX_IN_FLIGHT": (QUOTA_USERS, "${tostring(var.app.user_max_in_flight)}"),
    "PIXME_DAILY_BUDGET": ({"generate", "edit"}, "${tostring(var.app.daily_budget)}"),
    "PIXME_BUDGET_CACHE_S": ({"generate", "edit"}, "${tostring(var.app.budget_cache_s)}"),
    # web.caller: every function that verifies a Firebase ID token.
    "PIXME_ANONYMOUS": (TOKEN_CHECKING, "${var.app.anonymous}"),
    "PIXME_APP_CHECK": (TOKEN_CHECKING, "${var.app.app_check}"),
    "PIXME_PROJECT_NUMBER": (TOKEN_CHECKING, "${data.google_project.this.number}"),
    # Ingest and prompt limits: on_upload and uploads must agree on the size.
    "PIXME_MAX_UPLOAD_BYTES": ({"on_upload", "uploads"}, "${tostring(var.app.max_upload_bytes)}"),
    "PIXME_MAX_UPLOAD_PIXELS": ({"on_upload"}, "${tostring(var.app.max_upload_pixels)}"),
    "PIXME_MAX_SIDE": ({"on_upload"}, "${tostring(var.app.max_side)}"),
    "PIXME_MAX_TEXT_CHARS": ({"generate", "edit"}, "${tostring(var.app.max_text_chars)}"),
    # Derived from the model functions' timeouts (test_request_stale_s_follows_the_timeouts).
    "PIXME_REQUEST_STALE_S": ({"generate", "edit"}, "${tostring(local.request_stale_s)}"),
}
# Read by the code, deliberately left to its defaults (or, for the signer,
# set per function and checked by test_signers_sign_only_as_themselves).
LEFT_TO_THE_CODE = {
    # Empty: ID tokens are for the GCP project, which is the Firebase project here.
    "PIXME_FIREBASE_PROJECT",
    "PIXME_AUTH_CERTS_URL",
    "PIXME_APP_CHECK_JWKS_URL",
    "PIXME_SIGNING_KEY_FILE",
    "PIXME_PUBLIC_STORAGE_URL",
    "PIXME_LOG_FORMAT",
    # Off in the cloud: the mobile app needs no CORS (the local playground does).
    "PIXME_CORS_ORIGINS",
    # Off in the cloud: the likeness measure's dlib is not in the deployed lock.
    "PIXME_IDENTITY_CHECK",
    # Local stand-ins only: in the cloud the functions use Vertex AI with their
    # service account, no key and Google's own endpoints.
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
}


def validations(tf: Config) -> str:
    return " ".join(v["condition"] for v in tf.variables["app"]["validation"])


def test_scoped_settings_reach_exactly_the_functions_that_read_them(tf: Config) -> None:
    envs = function_envs(tf)
    for variable, (functions, value) in SCOPED_SETTINGS.items():
        assert {name for name, env in envs.items() if variable in env} == functions, variable
        assert all(envs[name][variable] == value for name in functions), variable
        attribute = re.search(r"var\.app\.(\w+)", value)
        if attribute:
            assert attribute.group(0) in validations(tf), f"app.{attribute.group(1)} is not validated"
    assert tf.data("google_project")["this"]["project_id"] == "${var.project_id}"


def test_every_setting_the_code_reads_is_decided_by_infra(tf: Config) -> None:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from pixme.config import ENV_VARS

    envs = function_envs(tf)
    set_by_infra = {k for env in envs.values() for k in env}
    common = set(tf.locals["common_env"])
    # A new setting in config.py fails here until infra passes it (and says
    # to which functions, in SCOPED_SETTINGS) or leaves it to the code.
    undecided = set(ENV_VARS) - set_by_infra - LEFT_TO_THE_CODE
    assert not undecided, f"config.py reads {sorted(undecided)}: pass them or list them in LEFT_TO_THE_CODE"
    scoped = set(set_by_infra) - common - {SIGNING_ACCOUNT}
    assert scoped == set(SCOPED_SETTINGS), f"unlisted in SCOPED_SETTINGS: {scoped ^ set(SCOPED_SETTINGS)}"
    assert not LEFT_TO_THE_CODE & set_by_infra, LEFT_TO_THE_CODE & set_by_infra
    assert set(ENV_VARS) >= LEFT_TO_THE_CODE


def test_app_defaults_are_the_codes_defaults(tf: Config) -> None:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from pixme.config import Settings

    code: dict[str, Any] = {name: f.default for name, f in Settings.model_fields.items()}
    app_type = tf.variables["app"]["type"]
    attributes = re.findall(r"\b(\w+)\s*=\s*optional\(number", app_type)
    used = {m for _, value in SCOPED_SETTINGS.values() for m in re.findall(r"var\.app\.(\w+)", value)}
    assert {a for a in used if a not in ("anonymous", "app_check")} <= set(attributes)
    for attribute in attributes:
        assert float(variable_default(app_type, attribute)) == float(code[attribute]), attribute
    for attribute in ("model", "anonymous", "app_check"):
        assert variable_default(app_type, attribute) == code[attribute], attribute


def test_infra_sets_only_variables_the_code_reads(tf: Config) -> None:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from pixme.config import ENV_VARS

    for name, env in function_envs(tf).items():
        set_by_infra = {k for k in env if k.startswith("PIXME_")}
        assert set_by_infra, name
        assert set_by_infra <= set(ENV_VARS), f"{name}: not read by the code: {set_by_infra - set(ENV_VARS)}"
    assert set(SCOPED_SETTINGS) <= set(ENV_VARS)
    assert "GOOGLE_CLOUD_PROJECT" in ENV_VARS


def terraform_binary() -> str:
    terraform = shutil.which("terraform") or (
        "/usr/local/bin/terraform" if Path("/usr/local/bin/terraform").exists() else None
    )
    if terraform is None:
        pytest.fail("terraform not found: install Terraform >= 1.6 to check the configuration")
    return terraform


def plan_variables(tmp_path: Path, app: str = "{}", **variables: str) -> subprocess.CompletedProcess[str]:
    """`terraform plan` of variables.tf alone: runs its validations offline."""
    shutil.copy(INFRA / "variables.tf", tmp_path / "variables.tf")
    extra = [arg for name, value in variables.items() for arg in ("-var", f"{name}={value}")]
    return subprocess.run(
        [terraform_binary(), "plan", "-input=false", "-no-color", "-var", "project_id=my-pixme-project",
         "-var", f"app={app}", *extra],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
        env={"PATH": "/usr/bin:/bin", "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1",
             "HOME": str(tmp_path)},
    )  # fmt: skip


MODELS_WITH_OPTIONS = "flash=gemini-3.1-flash-image,pro=gemini-3-pro-image;cost=4;requires=plan:pro"


def test_models_validation_accepts_what_the_code_parses(tmp_path: Path) -> None:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from pixme.config import _models

    parsed = _models(MODELS_WITH_OPTIONS, "unused")
    assert parsed["pro"].cost == 4 and parsed["pro"].requires == ("plan", "pro")
    app = f'{{models="{MODELS_WITH_OPTIONS}", app_check="enforce", anonymous="deny", daily_budget=0}}'
    result = plan_variables(tmp_path, app)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ('{models="pro=gemini-3-pro-image;cost=0"}', "app.models"),
        ('{models="pro=gemini-3-pro-image;tier=pro"}', "app.models"),
        ('{app_check="on"}', "app.app_check"),
        ('{anonymous="no"}', "app.anonymous"),
        ("{anonymous_daily_edits=101}", "app.anonymous_daily_edits"),
        ("{user_max_in_flight=0}", "app.user_max_in_flight"),
        ("{daily_budget=-1}", "app.daily_budget"),
    ],
)
def test_app_validation_refuses_what_the_code_would(tmp_path: Path, app: str, message: str) -> None:
    result = plan_variables(tmp_path, app)
    assert result.returncode != 0
    assert message in " ".join((result.stdout + result.stderr).split()), result.stdout + result.stderr


# --- sizing ----------------------------------------------------------------


def resolve(tf: Config, value: Any) -> Any:
    """A default that names a plain local (`${local.x}`), resolved once."""
    if isinstance(value, str) and re.fullmatch(r"\$\{local\.\w+\}", value):
        return tf.locals[local_name(value)]
    return value


def test_sizing_defaults_scale_to_zero_and_are_bounded(tf: Config) -> None:
    defaults = tf.locals["function_defaults"]
    assert set(defaults) == FUNCTIONS
    assert all(d["min_instances"] == 0 for d in defaults.values())
    fixed = {name: d["max_instances"] for name, d in defaults.items() if name not in ("generate", "edit")}
    assert all(1 <= m <= 100 for m in fixed.values()), fixed
    assert defaults["on_upload"]["memory"] == "1Gi"
    for name in ("generate", "edit"):
        assert defaults[name]["timeout_s"] == 120
        # Waiting 10-60 s on the model: a whole vCPU serving 4-8 at once, and
        # memory for that many requests' images.
        assert defaults[name]["cpu"] == "1" and defaults[name]["memory"] == "1Gi"
        assert 4 <= resolve(tf, defaults[name]["concurrency"]) <= 8
        assert defaults[name]["max_instances"] == "${local.model_max_instances}"
    # The light, network-bound APIs serve many requests per instance.
    for name in ("sessions", "uploads", "account"):
        assert defaults[name]["cpu"] == "1" and defaults[name]["concurrency"] >= 10, name
    # CPU-bound ingest and the single daily cleanup: one request at a time.
    assert defaults["on_upload"]["concurrency"] == 1 and defaults["cleanup"]["concurrency"] == 1
    # Every concurrency above 1 comes with a whole CPU (the precondition holds for the defaults).
    for name, d in defaults.items():
        assert resolve(tf, d["concurrency"]) == 1 or d["cpu"] == "1", name


def sizing_plan(tf: Config, tmp_path: Path, daily_budget: int) -> int:
    """model_max_instances as Terraform computes it from main.tf's locals."""
    names = ("model_call_s", "budget_peak_window_s", "model_concurrency", "model_max_instances")
    body = "\n".join(f"  {n} = {unexpression(tf.locals[n])}" for n in names)
    (tmp_path / "sizing.tf").write_text(
        f'locals {{\n{body}\n}}\noutput "max" {{ value = local.model_max_instances }}\n'
    )
    result = plan_variables(tmp_path, f"{{daily_budget={daily_budget}}}")
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"\+ max\s+=\s+(\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def unexpression(value: Any) -> str:
    """HCL source of a parsed attribute: `${expr}` back to expr."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{(.*)\}", value, re.S)
        return match.group(1) if match else f'"{value}"'
    return str(value)


@pytest.mark.parametrize(("daily_budget", "expected"), [(5000, 11), (0, 1), (100, 1), (10000000, 100)])
def test_model_max_instances_follow_the_daily_budget(
    tf: Config, tmp_path: Path, daily_budget: int, expected: int
) -> None:
    # ceil(budget * longest call / peak window / concurrency), between 1 and 100.
    assert sizing_plan(tf, tmp_path, daily_budget) == expected


def test_model_time_budget_is_checked_against_the_function_timeout(tf: Config, specs: dict[str, Any]) -> None:
    assert {name for name, s in specs.items() if s["calls_model"]} == {"generate", "edit"}
    fn = tf.resource("google_cloudfunctions2_function", "fn")
    conditions = [p["condition"] for p in block(fn, "lifecycle")["precondition"]]
    assert any(
        "var.app.model_timeout_s" in c and "var.app.model_deadline_s" in c and "each.value.timeout_s" in c
        for c in conditions
    )
    # And the defaults pass that check.
    app_type = tf.variables["app"]["type"]
    budget = max(
        int(variable_default(app_type, "model_timeout_s")),
        int(variable_default(app_type, "model_deadline_s")),
    )
    defaults = tf.locals["function_defaults"]
    assert all(budget < defaults[name]["timeout_s"] for name in ("generate", "edit"))


def hcl(value: Any) -> str:
    """HCL source of a parsed value: objects, lists and scalars (`${expr}` as expr)."""
    if isinstance(value, dict):
        return "{\n" + "\n".join(f"{k} = {hcl(v)}" for k, v in value.items()) + "\n}"
    if isinstance(value, list):
        return "[" + ", ".join(hcl(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else unexpression(value)


def request_stale_plan(tf: Config, tmp_path: Path, functions: str = "{}") -> int:
    """local.request_stale_s as Terraform computes it from main.tf's locals,
    with var.functions' sizing overrides."""
    names = ("model_call_s", "budget_peak_window_s", "model_concurrency", "model_max_instances",
             "function_specs", "function_defaults", "functions", "request_stale_s")  # fmt: skip
    body = "\n".join(f"  {n} = {hcl(tf.locals[n])}" for n in names)
    (tmp_path / "stale.tf").write_text(
        f'locals {{\n{body}\n}}\noutput "stale" {{ value = local.request_stale_s }}\n'
    )
    result = plan_variables(tmp_path, "{}", functions=functions)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"\+ stale\s+=\s+(\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1))


@pytest.mark.parametrize(
    ("functions", "expected"),
    [
        ("{}", 180),  # the 120 s timeout + 60: the code's own default
        ("{edit={timeout_s=300}}", 360),  # the longest model function's timeout sets it for both
        ("{generate={timeout_s=200},edit={timeout_s=150}}", 260),
        ("{cleanup={timeout_s=1800}}", 180),  # a function that calls no model does not count
    ],
)
def test_request_stale_s_follows_the_timeouts(
    tf: Config, tmp_path: Path, functions: str, expected: int
) -> None:
    # A request still marked running after its function's timeout was killed:
    # the setting must stay above the timeout however the timeouts are sized.
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from pixme.config import Settings

    assert request_stale_plan(tf, tmp_path, functions) == expected
    if functions == "{}":
        assert Settings.model_fields["request_stale_s"].default == expected


def test_every_variable_block_of_settings_is_validated(tf: Config) -> None:
    for name in ("project_id", "region", "name_prefix", "app", "functions", "alert_notification_channels"):
        assert tf.variables[name].get("validation"), f"variable {name} has no validation"
    # Sizing overrides may name every function, and only those.
    names = re.findall(r'"(\w+)"', tf.variables["functions"]["validation"][0]["condition"])
    assert set(names) == FUNCTIONS


# --- data ------------------------------------------------------------------


def test_buckets_are_private(tf: Config) -> None:
    buckets = tf.resources("google_storage_bucket")
    assert {"uploads", "assets", "source"} <= set(buckets)
    for name, bucket in buckets.items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
    assert not tf.resource_types() & {
        "google_storage_bucket_acl",
        "google_storage_default_object_acl",
        "google_storage_object_acl",
    }


def test_data_buckets_expire_objects(tf: Config) -> None:
    def delete_ages(bucket: dict[str, Any]) -> list[Any]:
        return [
            block(rule, "condition")["age"]
            for rule in bucket["lifecycle_rule"]
            if block(rule, "action")["type"] == "Delete"
        ]

    # Originals are deleted right after ingest; the rule is a one-day safety net.
    assert delete_ages(tf.resource("google_storage_bucket", "uploads")) == [1]
    assert delete_ages(tf.resource("google_storage_bucket", "assets")) == ["${var.app.retention_days + 1}"]


def test_firestore_ttl_covers_every_collection_that_expires(tf: Config) -> None:
    database = tf.resource("google_firestore_database", "default")
    assert database["name"] == "(default)" and database["type"] == "FIRESTORE_NATIVE"
    field = tf.resource("google_firestore_field", "expires_at_ttl")
    # Every collection the code writes an expires_at into.
    collections = set(re.findall(r'"([a-z_]+)"', field["for_each"]))
    assert collections == {"uploads", "sessions", "turns", "idempotency", "usage", "budget"}
    assert field["field"] == "expires_at" and field["collection"] == "${each.key}"
    assert field["ttl_config"] == [{}]
    # expires_at stays indexed: cleanup queries by it.
    assert "index_config" not in field


def test_required_apis_are_enabled(tf: Config) -> None:
    assert {f"{name}.googleapis.com" for name in REQUIRED_APIS} <= set(tf.locals["required_apis"])
    service = tf.resource("google_project_service", "apis")
    assert service["disable_on_destroy"] is False


# --- budget kill switch ---------------------------------------------------


def test_budget_exhaustion_is_counted_and_alerted(tf: Config, specs: dict[str, Any]) -> None:
    metric = tf.resource("google_logging_metric", "budget_exhausted")
    # The structured line spending.py logs (jsonPayload.event), from the
    # functions that charge the budget, as Cloud Run services.
    clauses = metric["filter"].split(" AND ")
    assert clauses == [
        'resource.type="cloud_run_revision"',
        "resource.labels.service_name=(${local.budget_services_clause})",
        'jsonPayload.event="budget_exhausted"',
    ]
    assert "local.budget_charging_services" in tf.locals["budget_services_clause"]
    services = tf.locals["budget_charging_services"]
    assert "google_cloudfunctions2_function.fn[name].name" in services and "if f.calls_model" in services
    descriptor = block(metric, "metric_descriptor")
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "INT64")

    policy = tf.resource("google_monitoring_alert_policy", "budget_exhausted")
    condition = block(block(policy, "conditions"), "condition_threshold")
    assert "logging.googleapis.com/user/${google_logging_metric.budget_exhausted.name}" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT" and condition["threshold_value"] == 0
    # Channels are the operator's choice; none by default.
    assert policy["notification_channels"] == "${var.alert_notification_channels}"
    channels = tf.variables["alert_notification_channels"]
    assert channels["default"] == [] and "list(string)" in channels["type"]
    assert "config/budget" in block(policy, "documentation")["content"]


def test_readme_says_how_to_flip_the_budget_switch() -> None:
    readme = (INFRA / "README.md").read_text()
    assert "config/budget" in readme and "daily_budget" in readme
    assert "integerValue" in readme and "updateMask.fieldPaths=daily_budget" in readme


# --- security rules --------------------------------------------------------

RULES = {
    # file: (service, the match that must cover everything)
    "firestore.rules": ("cloud.firestore", "/{document=**}"),
    "storage.rules": ("firebase.storage", "/{allPaths=**}"),
}
METHOD = "(read|write|get|list|create|update|delete)"
DENY_ALL = re.compile(rf"^{METHOD}(, {METHOD})*: if false$")


@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_deny_every_client_request(name: str) -> None:
    path = INFRA / name
    assert path.is_file(), f"missing infra/{name}"
    text, statements = rules_statements(path)
    service, catch_all = RULES[name]
    assert re.search(rf"\bservice\s+{re.escape(service)}\s*{{", text), f"{name} is not for {service}"
    assert "rules_version = '2';" in text
    assert f"match {catch_all}" in text
    # At least the explicit deny, and no allow that is anything but a deny.
    assert "read, write: if false" in statements
    assert all(DENY_ALL.match(s) for s in statements), f"{name} allows something: {statements}"


def test_rules_are_released_for_firestore_and_both_buckets(tf: Config) -> None:
    rulesets = tf.resources("google_firebaserules_ruleset")
    assert set(rulesets) == {"firestore", "storage"}
    for key, file in (("firestore", "firestore.rules"), ("storage", "storage.rules")):
        files = block(rulesets[key], "source")["files"]
        assert files == [{"name": file, "content": f'${{file("${{path.module}}/{file}")}}'}], key

    releases = tf.resources("google_firebaserules_release")
    assert set(releases) == {"firestore", "storage"}
    firestore = releases["firestore"]
    assert firestore["name"] == "cloud.firestore"
    assert firestore["ruleset_name"].endswith("${google_firebaserules_ruleset.firestore.name}")
    assert firestore["depends_on"] == ["${google_firestore_database.default}"]

    # One storage release per bucket, each on a bucket linked to Firebase.
    storage = releases["storage"]
    assert storage["for_each"] == "${local.buckets}" and set(tf.locals["buckets"]) == {"uploads", "assets"}
    assert storage["name"] == "firebase.storage/${google_firebase_storage_bucket.linked[each.key].bucket_id}"
    assert storage["ruleset_name"].endswith("${google_firebaserules_ruleset.storage.name}")
    linked = tf.resource("google_firebase_storage_bucket", "linked")
    assert linked["for_each"] == "${local.buckets}" and linked["bucket_id"] == "${each.value}"
    assert linked["provider"] == "google-beta"
    assert "google-beta" in tf.blocks["terraform"][0]["required_providers"][0]

    # A changed rules file is a new ruleset; its releases follow it.
    for key, release in releases.items():
        triggers = block(release, "lifecycle")["replace_triggered_by"]
        assert triggers == [f"${{google_firebaserules_ruleset.{key}}}"]


# --- files -----------------------------------------------------------------


def test_tfvars_example_sets_only_declared_variables(tf: Config) -> None:
    with (INFRA / "terraform.tfvars.example").open() as f:
        example = unquote(hcl2.load(f))
    assert "project_id" in example
    assert set(example) <= set(tf.variables)


def test_terraform_files_are_formatted() -> None:
    result = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-recursive", "-list=true", str(INFRA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"not formatted (run terraform fmt -recursive infra):\n{result.stdout}"


# --- region, reproducible source, pinned providers ---------------------------


@pytest.mark.parametrize(
    "region", ["europe-west1", "europe-west10", "us-east5", "me-central2", "northamerica-northeast1"]
)
def test_region_validation_accepts_real_regions(tmp_path: Path, region: str) -> None:
    result = plan_variables(tmp_path, region=region)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "region",
    ["europe-west", "europe-west0", "europe-west01", "europe-west1-b", "eu", "EUROPE-WEST1", "europe west1"],
)
def test_region_validation_refuses_junk(tmp_path: Path, region: str) -> None:
    result = plan_variables(tmp_path, region=region)
    assert result.returncode != 0
    assert "region must be a single region" in " ".join((result.stdout + result.stderr).split())


def test_source_archive_does_not_depend_on_the_umask(tf: Config) -> None:
    # Same code, same MD5, same object name on every machine: no redeploy
    # because a checkout had other file modes.
    archive = tf.data("archive_file")["functions"]
    assert archive["output_file_mode"] == "0644"


def test_providers_are_pinned_exactly() -> None:
    with (INFRA / "versions.tf").open() as f:
        providers = unquote(hcl2.load(f))["terraform"][0]["required_providers"][0]
    assert set(providers) == {"google", "google-beta", "archive"}
    versions = {name: p["version"] for name, p in providers.items()}
    for name, version in versions.items():
        assert re.fullmatch(r"= \d+\.\d+\.\d+", version), f"{name}: {version} is not an exact version"
    assert versions["google"].startswith("= 7.") and versions["google-beta"] == versions["google"]
    assert "terraform.lock.hcl" in (INFRA / "README.md").read_text()


# --- first apply on a fresh project ---------------------------------------


def test_functions_are_built_by_a_dedicated_narrow_account(tf: Config) -> None:
    assert "build" in tf.locals["service_accounts"]
    build = block(tf.resource("google_cloudfunctions2_function", "fn"), "build_config")
    assert build["service_account"] == '${google_service_account.sa["build"].id}'
    assert "build_service_account" not in tf.variables
    assert sorted(project_roles_of(tf, "build")) == [
        "roles/artifactregistry.writer",
        "roles/logging.logWriter",
    ]
    source = tf.resource("google_storage_bucket_iam_member", "build_reads_source")
    assert source == {
        "bucket": "${google_storage_bucket.source.name}",
        "role": "roles/storage.objectViewer",
        "member": sa_member("build"),
    }
    # Runtime identities never build; the build account never runs anything.
    assert "build" not in {s["identity"] for s in tf.locals["function_specs"].values()}


def test_first_apply_creates_the_service_agents_the_trigger_needs(tf: Config) -> None:
    agents = tf.resources("google_project_service_identity")
    assert {name: a["service"] for name, a in agents.items()} == {
        "aiplatform": "aiplatform.googleapis.com",
        "eventarc": "eventarc.googleapis.com",
        "pubsub": "pubsub.googleapis.com",
    }
    assert all(a["provider"] == "google-beta" for a in agents.values())
    roles = {e["role"]: e["member"] for e in tf.locals["project_roles"].values()}
    assert (
        roles["roles/eventarc.serviceAgent"]
        == "serviceAccount:${google_project_service_identity.eventarc.email}"
    )
    # The Cloud Storage agent publishes the object events (the data source creates it).
    assert roles["roles/pubsub.publisher"] == (
        "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
    )
    push = tf.resource("google_service_account_iam_member", "pubsub_agent_signs_as_trigger")
    assert push["member"] == "serviceAccount:${google_project_service_identity.pubsub.email}"
    assert push["service_account_id"] == '${google_service_account.sa["trigger"].name}'
    # The functions (and so the trigger) wait for all of it.
    depends = set(tf.resource("google_cloudfunctions2_function", "fn")["depends_on"])
    assert depends >= {
        "${google_project_iam_member.project}",
        "${google_storage_bucket_iam_member.build_reads_source}",
        "${google_service_account_iam_member.pubsub_agent_signs_as_trigger}",
        "${google_project_service_identity.eventarc}",
        "${google_project_service_identity.pubsub}",
    }
    assert "apply again" not in (INFRA / "README.md").read_text().split("## Budget kill switch")[0]


# --- Vertex AI --------------------------------------------------------------


def test_only_generate_and_edit_may_call_the_model_and_only_predict(
    tf: Config, specs: dict[str, Any]
) -> None:
    role = tf.resource("google_project_iam_custom_role", "model_caller")
    assert role["permissions"] == ["aiplatform.endpoints.predict"]
    roles = {m for s in strings(tf.blocks) for m in re.findall(r"roles/aiplatform[A-Za-z.]*", s)}
    assert not roles, f"predefined Vertex AI roles granted: {roles}"
    callers = [e["member"] for e in tf.locals["project_roles"].values() if e["role"] == MODEL_CALLER]
    assert callers == [sa_member("api")]
    assert {name for name, s in specs.items() if s["identity"] == "api"} == {"generate", "edit"}


# --- ingest limits ----------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("{max_upload_pixels=100000001}", "app.max_upload_pixels"),
        ("{max_upload_pixels=0}", "app.max_upload_pixels"),
        ("{max_side=255}", "app.max_side"),
        ("{max_upload_bytes=0}", "app.max_upload_bytes"),
        ("{max_upload_bytes=1.5}", "app.max_upload_bytes"),
        ("{max_text_chars=0}", "app.max_text_chars"),
    ],
)
def test_ingest_limit_validation_refuses_what_the_code_would(tmp_path: Path, app: str, message: str) -> None:
    result = plan_variables(tmp_path, app)
    assert result.returncode != 0
    assert message in " ".join((result.stdout + result.stderr).split()), result.stdout + result.stderr


def test_ingest_limits_accept_their_bounds(tmp_path: Path) -> None:
    result = plan_variables(tmp_path, "{max_upload_pixels=100000000, max_side=256, max_text_chars=1}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_models_with_fallbacks_pass_validation(tmp_path: Path) -> None:
    # The default (and deploy.tfvars) name a fallback model after "|".
    with (INFRA / "deploy.tfvars").open() as f:
        deployed = unquote(hcl2.load(f))["app"]["models"]
    assert "|" in deployed
    result = plan_variables(tmp_path, f'{{models="{deployed}"}}')
    assert result.returncode == 0, result.stdout + result.stderr
    assert plan_variables(tmp_path, '{models="flash=a||b"}').returncode != 0


# --- operations: log-based metrics and alerts --------------------------------

# The events of the structured log contract (jsonPayload.event), and the
# functions (Cloud Run services) that write each.
CONTRACT_EVENTS = {
    "request",
    "generation",
    "model_not_found",
    "quota_exceeded",
    "budget_exhausted",
    "ingest",
    "cleanup",
}
METRIC_TYPE = re.compile(
    r"logging\.googleapis\.com/user/\$\{google_logging_metric\.(\w+)(?:\[\"(\w+)\"\])?\.name\}"
)
PROMQL_METRIC = re.compile(r"google_logging_metric\.(\w+)(?:\[\"(\w+)\"\])?\.name")


def metric_filter(tf: Config, key: str) -> str:
    """The full filter of one metric of the events map, as Terraform builds it."""
    spec = tf.locals["event_metrics"][key]
    template = tf.resource("google_logging_metric", "events")["filter"]
    assert template == (
        "${local.log_resource} AND resource.labels.service_name=(${each.value.services})"
        " AND ${each.value.filter}"
    )
    return f'resource.type="cloud_run_revision" AND service_name=({spec["services"]}) AND {spec["filter"]}'


def alert_policies(tf: Config) -> dict[str, dict[str, Any]]:
    return tf.resources("google_monitoring_alert_policy")


def test_every_metric_counts_an_event_of_the_logging_contract(tf: Config) -> None:
    assert tf.locals["log_resource"] == 'resource.type="cloud_run_revision"'
    events = tf.locals["event_metrics"]
    assert set(events) == {
        "generations", "refusals", "server_errors", "quota_exceeded", "ingest_rejections",
        "model_not_found", "cleanup_runs",
    }  # fmt: skip
    counted = set()
    for key in events:
        found = re.findall(r'jsonPayload\.event="(\w+)"', metric_filter(tf, key))
        assert len(found) == 1, key
        counted.add(found[0])
    for name in ("model_latency", "generation_cost", "budget_exhausted"):
        metric = tf.resource("google_logging_metric", name)
        resource, _, rest = metric["filter"].partition(" AND ")
        assert resource in ('resource.type="cloud_run_revision"', "${local.log_resource}"), name
        assert rest.startswith("resource.labels.service_name=("), name
        counted.update(re.findall(r'jsonPayload\.event="(\w+)"', metric["filter"]))
    assert counted == CONTRACT_EVENTS
    # Each event is read from the services that write it.
    assert events["ingest_rejections"]["services"] == '"${local.service_of["on_upload"]}"'
    assert events["cleanup_runs"]["services"] == '"${local.service_of["cleanup"]}"'
    assert events["server_errors"]["services"] == "${local.https_services}"
    for key in ("generations", "refusals", "model_not_found"):
        assert events[key]["services"] == "${local.budget_services_clause}", key


def test_metrics_are_split_by_what_the_issue_asks(tf: Config) -> None:
    events = tf.locals["event_metrics"]
    # refusals by code, ingest rejections by reason, quota hits by quota.
    assert events["refusals"]["labels"]["code"] == "code"
    assert 'jsonPayload.outcome="refused"' in events["refusals"]["filter"]
    assert events["ingest_rejections"]["labels"] == {"reason": "reason"}
    assert 'jsonPayload.outcome="rejected"' in events["ingest_rejections"]["filter"]
    assert events["quota_exceeded"]["labels"] == {"quota": "quota"}
    assert "jsonPayload.status>=500" in events["server_errors"]["filter"]
    assert events["cleanup_runs"]["labels"] == {"outcome": "outcome"}
    # Every label is extracted from the field of the same line, and declared.
    metric = tf.resource("google_logging_metric", "events")
    assert "EXTRACT(jsonPayload.${field})" in metric["label_extractors"]
    descriptor = block(metric, "metric_descriptor")
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "INT64")
    labels = descriptor["dynamic"][0]["labels"]
    assert labels["for_each"] == "${each.value.labels}"


def test_model_latency_and_cost_are_distributions_of_the_generation_line(tf: Config) -> None:
    latency = tf.resource("google_logging_metric", "model_latency")
    assert latency["value_extractor"] == "EXTRACT(jsonPayload.latency_ms)"
    descriptor = block(latency, "metric_descriptor")
    assert (descriptor["value_type"], descriptor["unit"]) == ("DISTRIBUTION", "ms")
    declared = {label["key"] for label in descriptor["labels"]}
    assert declared == set(latency["label_extractors"]) == {"kind", "model", "outcome"}
    buckets = block(block(latency, "bucket_options"), "exponential_buckets")
    # The buckets reach past the longest model call (model_timeout_s, 60 s).
    top = buckets["scale"] * buckets["growth_factor"] ** buckets["num_finite_buckets"]
    assert buckets["scale"] <= 1000 and top > 60_000 * 2

    cost = tf.resource("google_logging_metric", "generation_cost")
    assert cost["value_extractor"] == "EXTRACT(jsonPayload.cost)"
    assert block(cost, "metric_descriptor")["value_type"] == "DISTRIBUTION"
    assert 'jsonPayload.event="generation"' in cost["filter"]


def referenced_metrics(tf: Config, policy: dict[str, Any]) -> set[tuple[str, str | None]]:
    text = " ".join(strings(policy["conditions"]))
    found = {(m.group(1), m.group(2)) for m in METRIC_TYPE.finditer(text)}
    for local in re.findall(r"\$\{local\.(promql_\w+)\}", text):
        match = PROMQL_METRIC.search(tf.locals[local])
        assert match, local
        found.add((match.group(1), match.group(2)))
    return found


def test_alerts_use_metrics_that_exist(tf: Config) -> None:
    metrics = tf.resources("google_logging_metric")
    keys = set(tf.locals["event_metrics"])
    used = set()
    for name, policy in alert_policies(tf).items():
        if name == "upload_dead_letters":
            continue  # a Pub/Sub metric (test_dead_letters_...)
        refs = referenced_metrics(tf, policy)
        assert refs, f"{name} counts no log-based metric"
        for resource, key in refs:
            assert resource in metrics, (name, resource)
            assert key is None or key in keys, (name, key)
        used |= refs
    assert used == {
        ("budget_exhausted", None),
        ("events", "server_errors"),
        ("generation_cost", None),
        ("events", "cleanup_runs"),
        ("events", "model_not_found"),
    }
    # PromQL names: logging_googleapis_com:user_ + the name with - turned to _.
    for local in ("promql_generation_cost", "promql_cleanup_runs"):
        assert tf.locals[local].startswith("logging_googleapis_com:user_${replace(google_logging_metric.")
        assert '"/[^A-Za-z0-9_]/", "_")' in tf.locals[local]
    assert tf.locals["promql_generation_cost"].endswith("_sum")


def test_every_alert_says_what_it_means_and_what_to_do(tf: Config) -> None:
    policies = alert_policies(tf)
    assert {p["display_name"] for p in policies.values()} == {
        "Pix Me: daily budget exhausted",
        "Pix Me: 5xx responses",
        "Pix Me: daily budget nearly spent",
        "Pix Me: cleanup failed",
        "Pix Me: no successful cleanup for a day",
        "Pix Me: a configured model is retired (404)",
        "Pix Me: upload events dead-lettered",
    }
    for name, policy in policies.items():
        documentation = block(policy, "documentation")
        assert documentation["mime_type"] == "text/markdown", name
        assert documentation["subject"], name
        content = documentation["content"]
        assert len(content.split()) >= 40, f"{name}: documentation too short to act on"
        assert policy["notification_channels"] == "${var.alert_notification_channels}", name
        assert policy["severity"] in {"WARNING", "ERROR", "CRITICAL"}, name
        assert block(policy, "alert_strategy")["auto_close"], name
        # One condition each (a PromQL condition must be alone in its policy).
        assert len(policy["conditions"]) == 1, name


def test_server_error_alert_is_a_count_over_five_minutes(tf: Config) -> None:
    condition = block(block(alert_policies(tf)["server_errors"], "conditions"), "condition_threshold")
    assert condition["threshold_value"] == "${local.server_errors_per_5_min}"
    assert tf.locals["server_errors_per_5_min"] >= 1
    aggregation = block(condition, "aggregations")
    assert (aggregation["alignment_period"], aggregation["per_series_aligner"]) == ("300s", "ALIGN_SUM")


def test_budget_nearly_spent_sums_a_day_of_cost_against_the_budget(tf: Config) -> None:
    policy = alert_policies(tf)["budget_nearly_spent"]
    condition = block(block(policy, "conditions"), "condition_prometheus_query_language")
    query = condition["query"]
    assert query.startswith(
        'sum(increase(${local.promql_generation_cost}{monitored_resource="cloud_run_revision"}'
    )
    # A rolling day: within the 25 h an alerting policy may look back.
    assert "[1d]" in query and query.endswith("> ${local.budget_alert_units}")
    assert tf.locals["budget_alert_units"] == "${floor(var.app.daily_budget * local.budget_alert_fraction)}"
    assert 0.5 <= tf.locals["budget_alert_fraction"] < 1
    assert "config/budget" in block(policy, "documentation")["content"]


def test_cleanup_is_alerted_when_it_fails_and_when_it_stops(tf: Config) -> None:
    policies = alert_policies(tf)
    failed = block(block(policies["cleanup_failed"], "conditions"), "condition_threshold")
    assert 'metric.labels.outcome="failed"' in failed["filter"]
    assert failed["comparison"] == "COMPARISON_GT" and failed["threshold_value"] == 0
    missing = block(block(policies["cleanup_missing"], "conditions"), "condition_prometheus_query_language")
    assert missing["query"].startswith("absent_over_time(${local.promql_cleanup_runs}")
    assert 'outcome="done"' in missing["query"] and "[${local.cleanup_absence_hours}h]" in missing["query"]
    # A day between runs (the default schedule is daily) plus a margin.
    assert 24 < tf.locals["cleanup_absence_hours"] <= 30
    assert variable_schedule_is_daily(tf.variables["cleanup_schedule"]["default"])


def variable_schedule_is_daily(cron: str) -> bool:
    minute, hour, day, month, weekday = cron.split()
    return minute.isdigit() and hour.isdigit() and (day, month, weekday) == ("*", "*", "*")


def test_a_retired_model_is_alerted_per_model(tf: Config) -> None:
    condition = block(block(alert_policies(tf)["model_not_found"], "conditions"), "condition_threshold")
    assert condition["threshold_value"] == 0
    assert block(condition, "aggregations")["group_by_fields"] == ["metric.labels.model"]
    assert tf.locals["event_metrics"]["model_not_found"]["labels"] == {"model": "model"}


# --- dead letters of the storage trigger ------------------------------------


def render(script: str, values: dict[str, str]) -> str:
    """The heredoc with its interpolations replaced by sample values."""
    body = script.removeprefix("<<-EOT\n").rsplit("EOT", 1)[0]
    body = "\n".join(line.strip() for line in body.splitlines())

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        for key, sample in values.items():
            if key in expression:
                return sample
        raise AssertionError(f"no sample for ${{{expression}}}")

    return re.sub(r"\$\{([^}]*)\}", value, body)


def test_dead_letters_are_wired_to_the_upload_trigger(tf: Config, tmp_path: Path) -> None:
    topic = tf.resource("google_pubsub_topic", "upload_dead_letters")
    assert topic["name"] == "${var.name_prefix}-upload-dead-letters"
    holding = tf.resource("google_pubsub_subscription", "upload_dead_letters")
    assert holding["topic"] == "${google_pubsub_topic.upload_dead_letters.id}"
    assert holding["message_retention_duration"] == "604800s"
    assert holding["expiration_policy"] == [{"ttl": ""}]
    # Dead-lettering publishes as the Pub/Sub service agent: on this topic only.
    publisher = tf.resource("google_pubsub_topic_iam_member", "pubsub_agent_publishes_dead_letters")
    assert publisher == {
        "topic": "${google_pubsub_topic.upload_dead_letters.id}",
        "role": "roles/pubsub.publisher",
        "member": "serviceAccount:${google_project_service_identity.pubsub.email}",
    }
    assert (
        tf.locals["upload_trigger"]
        == '${google_cloudfunctions2_function.fn["on_upload"].event_trigger[0].trigger}'
    )

    # The setup script, run with a stand-in gcloud that records its calls.
    dead_letter_topic = "projects/my-pixme-project/topics/pixme-upload-dead-letters"
    script = render(tf.locals["upload_dead_letter_setup"], {
        "local.upload_trigger": "pixme-on-upload-123456",
        "var.project_id": "my-pixme-project",
        "var.region": "europe-west1",
        "google_project_service_identity.pubsub.email": "service-42@gcp-sa-pubsub.iam.gserviceaccount.com",
        "google_pubsub_topic.upload_dead_letters.id": dead_letter_topic,
        "local.upload_dead_letter_attempts": str(tf.locals["upload_dead_letter_attempts"]),
    })  # fmt: skip
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    subscription = (
        "projects/my-pixme-project/subscriptions/eventarc-europe-west1-pixme-on-upload-123456-sub-7"
    )
    fake.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n'
        f'case "$*" in "eventarc triggers describe"*) echo {subscription};; esac\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30,
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    describe, grant, update = calls.read_text().splitlines()
    assert describe.startswith("eventarc triggers describe pixme-on-upload-123456 --project my-pixme-project")
    assert "--location europe-west1" in describe and "value(transport.pubsub.subscription)" in describe
    # Subscriber on the source subscription, for the Pub/Sub agent only.
    assert grant.startswith(f"pubsub subscriptions add-iam-policy-binding {subscription} ")
    assert "--member serviceAccount:service-42@gcp-sa-pubsub.iam.gserviceaccount.com" in grant
    assert "--role roles/pubsub.subscriber" in grant
    # The GA command has no --condition flag (subscriptions take no conditions).
    assert "--condition" not in grant
    assert update.startswith(f"pubsub subscriptions update {subscription} ")
    assert f"--dead-letter-topic {dead_letter_topic}" in update
    attempts = int(re.search(r"--max-delivery-attempts (\d+)", update).group(1))  # type: ignore[union-attr]
    assert 5 <= attempts <= 100  # Pub/Sub's bounds

    # An empty answer (no trigger yet) stops the script before any change.
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}.empty\n')
    failed = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30,
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert failed.returncode != 0
    assert len((tmp_path / "calls.empty").read_text().splitlines()) == 1

    # Emitted as an output and run by the pipeline after every apply on main.
    outputs = {name: body for entry in tf.blocks["output"] for name, body in entry.items()}
    assert outputs["upload_dead_letter_setup"]["value"] == "${local.upload_dead_letter_setup}"
    build = (ROOT / "cloudbuild.yaml").read_text()
    assert "terraform output -raw upload_dead_letter_setup > /workspace/upload-dead-letters.sh" in build
    assert "bash /workspace/upload-dead-letters.sh" in build

    # And a dead letter opens an incident.
    alert = block(block(alert_policies(tf)["upload_dead_letters"], "conditions"), "condition_threshold")
    assert (
        'resource.labels.subscription_id="${google_pubsub_subscription.upload_dead_letters.name}"'
        in alert["filter"]
    )
    assert "pubsub.googleapis.com/subscription/num_undelivered_messages" in alert["filter"]
    assert alert["threshold_value"] == 0


# --- billing budget -----------------------------------------------------------


def test_billing_budget_exists_only_with_a_billing_account(tf: Config) -> None:
    budget = tf.resource("google_billing_budget", "project")
    assert budget["count"] == '${var.billing_account == "" ? 0 : 1}'
    assert tf.variables["billing_account"]["default"] == ""
    assert budget["billing_account"] == "${var.billing_account}"
    amount = block(block(budget, "amount"), "specified_amount")
    assert amount["units"] == "${tostring(var.billing_budget_amount)}"
    assert amount["currency_code"] == "${var.billing_budget_currency}"
    assert block(budget, "budget_filter")["projects"] == ["projects/${data.google_project.this.number}"]
    assert tf.locals["billing_budget_thresholds"] == [0.5, 0.9, 1.0]
    rules = budget["dynamic"][0]["threshold_rules"]
    assert rules["for_each"] == "${local.billing_budget_thresholds}"
    assert block(budget, "threshold_rules")["spend_basis"] == "FORECASTED_SPEND"
    updates = block(budget, "all_updates_rule")
    assert updates["monitoring_notification_channels"] == "${var.alert_notification_channels}"
    assert "billingbudgets.googleapis.com" in tf.locals["required_apis"]
    readme = (INFRA / "README.md").read_text()
    assert "roles/billing.costsManager" in readme


@pytest.mark.parametrize(
    ("variables", "ok"),
    [
        ({"billing_account": "012345-6789AB-CDEF01", "billing_budget_amount": "50"}, True),
        ({"billing_account": "", "billing_budget_currency": "EUR"}, True),
        ({"billing_account": "billingAccounts/012345-6789AB-CDEF01"}, False),
        ({"billing_budget_amount": "0"}, False),
        ({"billing_budget_currency": "euro"}, False),
    ],
)
def test_billing_variables_are_validated(tmp_path: Path, variables: dict[str, str], ok: bool) -> None:
    result = plan_variables(tmp_path, **variables)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr


# --- the build's source read ------------------------------------------------


def test_the_build_reads_only_the_function_sources_bucket(tf: Config) -> None:
    grant = tf.resource("google_project_iam_member", "build_reads_function_sources")
    assert grant["role"] == "roles/storage.objectViewer"
    assert grant["member"] == sa_member("build")
    expression = block(grant, "condition")["expression"]
    assert expression == (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}")'
    )
    depends = tf.resource("google_cloudfunctions2_function", "fn")["depends_on"]
    assert "${google_project_iam_member.build_reads_function_sources}" in depends


# --- state ------------------------------------------------------------------


def test_the_state_bucket_is_made_by_a_bootstrap_with_local_state() -> None:
    bootstrap = Config(INFRA / "bootstrap")
    settings = bootstrap.blocks["terraform"][0]
    assert "backend" not in settings, "the bootstrap keeps its own state locally"
    pinned = settings["required_providers"][0]["google"]["version"]
    with (INFRA / "versions.tf").open() as f:
        main = unquote(hcl2.load(f))["terraform"][0]
    assert pinned == main["required_providers"][0]["google"]["version"]
    assert main["backend"] == [{"gcs": {}}]

    bucket = bootstrap.resource("google_storage_bucket", "state")
    assert block(bucket, "versioning")["enabled"] is True
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert block(bucket, "lifecycle")["prevent_destroy"] is True
    # Its default name is the one the pipeline uses.
    assert bootstrap.locals["bucket"] == '${var.bucket == "" ? "${var.project_id}-tfstate" : var.bucket}'
    assert re.search(
        r"_TF_STATE_BUCKET: \$\{PROJECT_ID\}-tfstate$", (ROOT / "cloudbuild.yaml").read_text(), re.M
    )


def test_one_state_prefix_everywhere() -> None:
    places = {
        "infra/versions.tf": INFRA / "versions.tf",
        "infra/bootstrap/main.tf": INFRA / "bootstrap" / "main.tf",
        "README.md": ROOT / "README.md",
        "infra/README.md": INFRA / "README.md",
        "cloudbuild.yaml": ROOT / "cloudbuild.yaml",
    }
    for label, path in places.items():
        prefixes = set(re.findall(r"prefix=([A-Za-z0-9_./-]+)", path.read_text().replace('\\"', '"')))
        assert prefixes == {"pixme"}, f"{label}: {prefixes}"
    readme = (INFRA / "README.md").read_text()
    assert "cd infra/bootstrap" in readme or "cd bootstrap" in readme


def test_the_provider_lock_file_is_committed_not_ignored() -> None:
    readme = " ".join((INFRA / "README.md").read_text().split())
    assert ".terraform.lock.hcl" in readme and "commit it" in readme
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "infra/.terraform.lock.hcl"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 1, "infra/.terraform.lock.hcl must not be git-ignored"
    bootstrap = subprocess.run(["git", "check-ignore", "-q", "infra/bootstrap/terraform.tfstate"], cwd=ROOT)
    assert bootstrap.returncode == 0, "the bootstrap's local state stays out of git"
