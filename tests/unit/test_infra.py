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

FUNCTIONS = {"on_upload", "generate", "edit", "sessions", "cleanup"}
PUBLIC_FUNCTIONS = {"generate", "edit", "sessions"}
REQUIRED_ENV = {
    "GOOGLE_CLOUD_PROJECT",
    "PIXME_UPLOADS_BUCKET",
    "PIXME_ASSETS_BUCKET",
    "PIXME_MODEL",
    "PIXME_MODELS",
    "PIXME_RETENTION_DAYS",
    "PIXME_URL_TTL_S",
    "PIXME_MODEL_TIMEOUT_S",
    "PIXME_SIGNING_SERVICE_ACCOUNT",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_LOCATION",
}
REQUIRED_APIS = (
    "cloudfunctions", "run", "eventarc", "pubsub", "storage", "firestore",
    "cloudscheduler", "aiplatform", "iamcredentials", "cloudbuild", "artifactregistry",
)  # fmt: skip
FORBIDDEN_ROLES = {"roles/owner", "roles/editor", "roles/storage.admin"}
INVOKER_RESOURCES = (
    "google_cloud_run_service_iam_member",
    "google_cloud_run_v2_service_iam_member",
    "google_cloudfunctions2_function_iam_member",
)
FINALIZED = "google.cloud.storage.object.v1.finalized"


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


def project_roles(tf: Config) -> list[str]:
    """Roles granted at project level, resolving for_each over a local map."""
    roles: list[str] = []
    for name, body in tf.resources("google_project_iam_member").items():
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


# --- functions and triggers ------------------------------------------------


def test_the_five_functions_exist_with_their_entry_points(tf: Config, specs: dict[str, Any]) -> None:
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
    roles = project_roles(tf)
    assert roles
    assert not [r for r in roles if r.startswith("roles/storage.")]


def test_storage_roles_are_bucket_scoped_object_roles(tf: Config) -> None:
    grants = tf.resource("google_storage_bucket_iam_member", "buckets")
    assert grants["role"] == "${each.value.role}"
    entries = tf.locals[local_name(grants["for_each"])].values()
    assert {e["role"] for e in entries} <= {
        "roles/storage.objectViewer",
        "roles/storage.objectCreator",
        "roles/storage.objectUser",
    }
    assert {e["bucket"] for e in entries} == {"uploads", "assets"}


def test_api_may_sign_urls_only_as_itself(tf: Config) -> None:
    grants = tf.resources("google_service_account_iam_member")
    creators = [g for g in grants.values() if g["role"] == "roles/iam.serviceAccountTokenCreator"]
    assert creators == [
        {
            "service_account_id": '${google_service_account.sa["api"].name}',
            "role": "roles/iam.serviceAccountTokenCreator",
            "member": 'serviceAccount:${google_service_account.sa["api"].email}',
        }
    ]
    assert "roles/iam.serviceAccountTokenCreator" not in project_roles(tf)


def test_runtime_identities_are_separate(tf: Config, specs: dict[str, Any]) -> None:
    assert {name: s["identity"] for name, s in specs.items()} == {
        "on_upload": "ingest",
        "generate": "api",
        "edit": "api",
        "sessions": "api",
        "cleanup": "cleanup",
    }
    assert set(tf.locals["service_accounts"]) == {"ingest", "api", "cleanup", "trigger", "scheduler"}
    service = block(tf.resource("google_cloudfunctions2_function", "fn"), "service_config")
    assert service["service_account_email"] == "${google_service_account.sa[each.value.identity].email}"
    vertex = [e for e in tf.locals["project_roles"].values() if e["role"] == "roles/aiplatform.user"]
    assert [e["member"] for e in vertex] == ['serviceAccount:${google_service_account.sa["api"].email}']


# --- environment -----------------------------------------------------------


def test_every_function_gets_the_pixme_environment(tf: Config) -> None:
    service = block(tf.resource("google_cloudfunctions2_function", "fn"), "service_config")
    assert service["environment_variables"] == "${local.function_env}"
    env = tf.locals["function_env"]
    assert set(env) >= REQUIRED_ENV
    assert env["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
    assert env["PIXME_SIGNING_SERVICE_ACCOUNT"] == '${google_service_account.sa["api"].email}'
    assert env["PIXME_UPLOADS_BUCKET"] == "${google_storage_bucket.uploads.name}"
    assert env["PIXME_ASSETS_BUCKET"] == "${google_storage_bucket.assets.name}"

    app_type = tf.variables["app"]["type"]
    assert variable_default(app_type, "model") == "gemini-3.1-flash-image"
    assert variable_default(app_type, "retention_days") == "30"
    assert variable_default(app_type, "url_ttl_s") == "900"
    assert variable_default(app_type, "model_timeout_s") == "60"
    assert variable_default(app_type, "vertex_location") == "global"


def test_infra_sets_only_variables_the_code_reads(tf: Config) -> None:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from pixme.config import ENV_VARS

    set_by_infra = {k for k in tf.locals["function_env"] if k.startswith("PIXME_")}
    assert set_by_infra <= set(ENV_VARS), f"not read by the code: {set_by_infra - set(ENV_VARS)}"
    assert "GOOGLE_CLOUD_PROJECT" in ENV_VARS


# --- sizing ----------------------------------------------------------------


def test_sizing_defaults_scale_to_zero_and_are_bounded(tf: Config) -> None:
    defaults = tf.locals["function_defaults"]
    assert set(defaults) == FUNCTIONS
    assert all(d["min_instances"] == 0 for d in defaults.values())
    assert all(1 <= d["max_instances"] <= 100 for d in defaults.values())
    assert defaults["on_upload"]["memory"] == "1Gi"
    for name in ("generate", "edit"):
        assert defaults[name]["memory"] == "512Mi"
        assert defaults[name]["timeout_s"] == 120


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


def test_every_variable_block_of_settings_is_validated(tf: Config) -> None:
    for name in ("project_id", "region", "name_prefix", "app", "functions"):
        assert tf.variables[name].get("validation"), f"variable {name} has no validation"


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

    assert delete_ages(tf.resource("google_storage_bucket", "uploads")) == ["${var.upload_retention_days}"]
    assert delete_ages(tf.resource("google_storage_bucket", "assets")) == ["${var.app.retention_days + 1}"]


def test_firestore_ttl_covers_uploads_sessions_and_turns(tf: Config) -> None:
    database = tf.resource("google_firestore_database", "default")
    assert database["name"] == "(default)" and database["type"] == "FIRESTORE_NATIVE"
    field = tf.resource("google_firestore_field", "expires_at_ttl")
    assert field["for_each"] == '${toset(["uploads", "sessions", "turns"])}'
    assert field["field"] == "expires_at" and field["collection"] == "${each.key}"
    assert field["ttl_config"] == [{}]
    # expires_at stays indexed: cleanup queries by it.
    assert "index_config" not in field


def test_required_apis_are_enabled(tf: Config) -> None:
    assert {f"{name}.googleapis.com" for name in REQUIRED_APIS} <= set(tf.locals["required_apis"])
    service = tf.resource("google_project_service", "apis")
    assert service["disable_on_destroy"] is False


# --- files -----------------------------------------------------------------


def test_tfvars_example_sets_only_declared_variables(tf: Config) -> None:
    with (INFRA / "terraform.tfvars.example").open() as f:
        example = unquote(hcl2.load(f))
    assert "project_id" in example
    assert set(example) <= set(tf.variables)


def test_terraform_files_are_formatted() -> None:
    terraform = shutil.which("terraform") or (
        "/usr/local/bin/terraform" if Path("/usr/local/bin/terraform").exists() else None
    )
    if terraform is None:
        pytest.fail("terraform not found: install Terraform >= 1.6 to check `terraform fmt`")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-list=true", str(INFRA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"not formatted (run terraform fmt -recursive infra):\n{result.stdout}"
