"""The code under functions/ and the Terraform in infra/ agree.

test_infra.py checks what infra declares against hand-written expectations
(BUCKET_ACCESS, SCOPED_SETTINGS, the entry point names). This file derives the
expectations from the code instead, with `ast` (code_paths.py), and holds
infra (read with python-hcl2) to them:

1. every entry point in main.py is deployed, with its trigger, and nothing else is;
2. every environment variable the code reads is set by infra or deliberately
   defaulted (DELIBERATELY_DEFAULTED, with reasons), infra sets nothing the
   code does not read, and a setting given to only some functions reaches
   exactly the functions whose code path reads it;
3. every Firestore query the adapter runs is served by an automatic
   single-field index or a composite index declared in firestore.tf;
4. each runtime identity holds the permissions its functions' code paths use,
   on the right bucket or account, and the over-grants left are known ones;
   Vertex AI's agent can read the buckets the code sends it gs:// references into.

Each checker returns a list of problems. The last tests show that each can
fail: they mutate a parsed copy of infra, or read an edited copy of the code.
"""

from __future__ import annotations

import ast
import copy
import itertools
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest
from code_paths import FUNCTIONS_DIR, ROOT, SETTINGS, Program, Query, Sources, firestore_queries
from test_infra import unquote

INFRA = ROOT / "infra"
GCS = "pixme.adapters.gcs.GcsBlobStore"  # the BlobStore adapter
SIGNING_ACCOUNT = "PIXME_SIGNING_SERVICE_ACCOUNT"
# Settings fields naming the two buckets, as the labels infra's local.buckets uses.
BUCKET_FIELDS = {"uploads_bucket": "uploads", "assets_bucket": "assets"}
# The label of the bucket a storage event names: the one its trigger watches.
EVENT = "event"

# --- reading infra ------------------------------------------------------------------


@dataclass
class Infra:
    """The parts of infra/*.tf these checks read; a deep copy can be mutated."""

    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path = INFRA) -> Infra:
        infra = cls()
        for path in sorted(directory.glob("*.tf")):
            with path.open() as f:
                parsed = unquote(hcl2.load(f))
            for entry in parsed.get("locals", []):
                infra.locals.update(entry)
            for entry in parsed.get("resource", []):
                for type_, named in entry.items():
                    infra.resources.setdefault(type_, {}).update(named)
        return infra

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        return dict(self.resources.get(type_, {}).get(name, {}))

    def copy(self) -> Infra:
        return copy.deepcopy(self)


def sa_name(expression: str) -> str | None:
    """The identity in `google_service_account.sa["X"].email` (or the member form)."""
    match = re.fullmatch(r'(?:serviceAccount:)?\$\{google_service_account\.sa\["(\w+)"\]\.(?:email|name)\}',
                         expression)  # fmt: skip
    return match.group(1) if match else None


def listed(expression: str) -> set[str]:
    """The strings of a `${toset(["a", "b"])}` expression."""
    return set(re.findall(r'"([^"]+)"', expression))


def function_env(infra: Infra) -> dict[str, dict[str, str]]:
    """What each function gets: common, its shared groups, its own (main.tf's merge)."""
    expression = " ".join(str(infra.locals["function_env"]).split())
    for part in ("local.common_env", "local.function_env_groups[name]", "local.shared_env[group]",
                 "local.function_env_extra[name]"):  # fmt: skip
        assert part in expression, f"function_env no longer merges {part}: update function_env()"
    envs = {}
    for name in infra.locals["function_specs"]:
        env = dict(infra.locals["common_env"])
        for group in infra.locals["function_env_groups"].get(name, []):
            env.update(infra.locals["shared_env"][group])
        env.update(infra.locals["function_env_extra"].get(name, {}))
        envs[name] = env
    return envs


# --- reading the code ---------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    program: Program
    entry_points: dict[str, str]  # function name -> "http" | "cloud_event"
    reachable: dict[str, set[str]]  # entry point -> units its code path can run
    finalized: str  # the event type on_upload acts on
    buckets: Sources  # where a bucket name comes from: Settings fields, the event's object


def event_objects(program: Program, entry_point: str) -> set[str]:
    """Classes a cloud_event entry point builds from its event (storage_object(event))."""
    unit = program.units[f"main.{entry_point}"]
    event = unit.node.args.args[0].arg
    program.env(unit)
    found = set()
    for node in ast.walk(unit.node):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and any(isinstance(a, ast.Name) and a.id == event for a in node.value.args)
            and (made := program.type_of(node.value, unit)) is not None
            and made.kind == "instance"
        ):
            found.add(made.name)
    return found


def entry_points(program: Program) -> dict[str, str]:
    found = {}
    for node in program.trees["main"].body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Attribute)
                    and isinstance(decorator.value, ast.Name)
                    and decorator.value.id == "functions_framework"
                ):
                    found[node.name] = decorator.attr
    return found


def module_constant(program: Program, module: str, name: str) -> Any:
    for node in program.trees[module].body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
                return ast.literal_eval(node.value)
    raise AssertionError(f"{module}.{name} not found")


def read_code(root: Path = FUNCTIONS_DIR) -> Code:
    program = Program(root)
    points = entry_points(program)
    assert points, "no entry points found in main.py"
    buckets: Sources = {(SETTINGS, name): label for name, label in BUCKET_FIELDS.items()}
    for name in (n for n, kind in points.items() if kind == "cloud_event"):
        for made in event_objects(program, name):
            assert "bucket" in program.classes[made].fields, f"{made} names no bucket"
            buckets[(made, "bucket")] = EVENT
    return Code(
        program,
        points,
        {name: program.reachable(f"main.{name}") for name in points},
        module_constant(program, "pixme.events", "FINALIZED"),
        buckets,
    )


@pytest.fixture(scope="module")
def code() -> Code:
    return read_code()


def edited_code(tmp_path: Path, module: str, old: str, new: str) -> Code:
    """The code read from a copy of functions/ with one edit in `module`'s file."""
    root = tmp_path / "functions"
    shutil.copytree(FUNCTIONS_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / (module.replace(".", "/") + ".py")
    text = path.read_text()
    assert old in text, f"{old!r} is no longer in {module}: update the test"
    path.write_text(text.replace(old, new, 1))
    return read_code(root)


@pytest.fixture(scope="module")
def infra() -> Infra:
    return Infra.load()


# === 1. entry points ==================================================================

# functions_framework's decorator -> the trigger local.function_specs must give it.
TRIGGER_OF = {"http": "https", "cloud_event": "storage"}


def entry_point_problems(code: Code, infra: Infra) -> list[str]:
    problems = []
    specs = infra.locals["function_specs"]
    fn = infra.resource("google_cloudfunctions2_function", "fn")
    if fn.get("for_each") != "${local.functions}" or "local.function_specs" not in infra.locals["functions"]:
        problems.append("the functions resource no longer iterates over local.functions (function_specs)")
    if fn.get("build_config", [{}])[0].get("entry_point") != "${each.value.entry_point}":
        problems.append("build_config.entry_point is not each.value.entry_point")
    # The one dynamic event_trigger, and the trigger value that switches it on.
    triggers = [d["event_trigger"] for d in fn.get("dynamic", []) if "event_trigger" in d]
    evented: str | None = None
    if len(triggers) == 1:
        match = re.search(r'each\.value\.trigger == "(\w+)"', triggers[0]["for_each"])
        evented = match.group(1) if match else None
        event_type = triggers[0]["content"][0].get("event_type")
        if event_type != code.finalized:
            problems.append(f"the event trigger delivers {event_type}, on_upload acts on {code.finalized}")
    elif triggers or "event_trigger" in fn:
        problems.append("expected exactly one dynamic event_trigger")
    by_entry = {spec["entry_point"]: name for name, spec in specs.items()}
    for name, kind in sorted(code.entry_points.items()):
        if name not in by_entry:
            problems.append(f"{name}: @{kind} in main.py but not deployed")
            continue
        spec = specs[by_entry[name]]
        want = TRIGGER_OF.get(kind)
        if spec["trigger"] != want:
            problems.append(f"{name}: @{kind} in main.py, deployed with trigger {spec['trigger']}")
        if (spec["trigger"] == evented) != (kind == "cloud_event"):
            problems.append(f"{name}: @{kind} but the event trigger is {'on' if kind == 'http' else 'off'}")
    for entry, name in sorted(by_entry.items()):
        if entry not in code.entry_points:
            problems.append(f"{name}: deployed with entry point {entry}, which main.py does not define")
    return problems


def test_every_entry_point_is_deployed_with_its_trigger(code: Code, infra: Infra) -> None:
    assert set(code.entry_points.values()) <= set(TRIGGER_OF)
    assert entry_point_problems(code, infra) == []


# === 2. settings =======================================================================

# Read by the code, left to its defaults by infra on purpose.
DELIBERATELY_DEFAULTED = {
    "PIXME_FIREBASE_PROJECT": "empty means the GCP project, which is the Firebase project here",
    "PIXME_AUTH_CERTS_URL": "Google's securetoken certificates; only the local stack points elsewhere",
    "PIXME_APP_CHECK_JWKS_URL": "Firebase App Check's public JWKS; only the local stack points elsewhere",
    "PIXME_SIGNING_KEY_FILE": "local stack only: the cloud signs through IAM signBlob, no key file",
    "PIXME_PUBLIC_STORAGE_URL": "local stack only: signed URLs name storage.googleapis.com by default",
    "PIXME_LOG_FORMAT": "json, what Cloud Logging parses; text is for a terminal",
    "GOOGLE_GEMINI_BASE_URL": "local stand-in only: the cloud calls Google's own endpoint",
    "GOOGLE_VERTEX_BASE_URL": "local stand-in only: the cloud calls Google's own endpoint",
    "GOOGLE_API_KEY": "Developer API only: in the cloud Vertex AI is called with the service account",
    "GEMINI_API_KEY": "Developer API only: in the cloud Vertex AI is called with the service account",
    "OMP_NUM_THREADS": "faces.py pins it to 1 itself (setdefault) before the detector loads",
    "PIXME_CORS_ORIGINS": "off in the cloud: the app needs no CORS (the stack sets it for the playground)",
    "PIXME_IDENTITY_CHECK": "off in the cloud: the likeness measure's dlib is not in the deployed lock",
}


def from_env_reads(program: Program) -> dict[str, set[str]]:
    """Settings field -> the environment variables Settings.from_env reads for it,
    from the fields' declarations (pydantic-settings: each names its variables).

    The fields derived from others read what those read (`models` and
    `aliases` come from PIXME_MODEL and PIXME_MODELS); "" holds the required
    settings, which from_env checks before any field: every function reads them.
    """
    from pixme import config

    fields = {name: set(config._env_names(name)) for name in config.Settings.model_fields}
    for derived in ("models", "aliases"):
        fields[derived] = fields["model"] | fields["models_spec"]
    fields[""] = set(config.REQUIRED)
    return fields


def os_environ_reads(program: Program) -> dict[str, set[str]]:
    """Unit (or "" for module level) -> variables read through os.environ / os.getenv."""

    def environ(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    found: dict[str, set[str]] = {}
    for module, tree in program.trees.items():
        owners = {
            id(n): unit.qualname
            for unit in program.units.values() if unit.module == module
            for n in ast.walk(unit.node)
        }  # fmt: skip
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
                getenv = node.func.attr == "getenv" and isinstance(node.func.value, ast.Name)
                if (environ(node.func.value) and node.func.attr in ("get", "setdefault", "pop")) or getenv:
                    name = node.args[0]
            elif isinstance(node, ast.Subscript) and environ(node.value):
                name = node.slice
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.setdefault(owners.get(id(node), ""), set()).add(name.value)
    return found


@dataclass(frozen=True)
class Reads:
    anywhere: set[str]  # every variable any code reads
    by_function: dict[str, set[str]]  # what each entry point's code path uses


# Settings' own construction reads every field; that is parsing, not use.
CONSTRUCTION = {f"{SETTINGS}.{name}" for name in ("from_env", "_derived", "_consistent", "replace")}


def environment_reads(code: Code) -> Reads:
    fields = from_env_reads(code.program)
    direct = os_environ_reads(code.program)
    anywhere = set().union(*fields.values(), *direct.values())
    by_function = {}
    for name, units in code.reachable.items():
        used = code.program.attribute_reads(units - CONSTRUCTION, SETTINGS)
        unknown = set(used) - set(fields) - _settings_methods(code.program)
        assert not unknown, f"{name} reads Settings.{sorted(unknown)}, which from_env does not set"
        variables = set().union(*(fields[f] for f in used if f in fields), fields[""], direct.get("", set()))
        variables |= set().union(*(direct.get(unit, set()) for unit in units))
        by_function[name] = variables
    return Reads(anywhere, by_function)


def _settings_methods(program: Program) -> set[str]:
    return {u.node.name for u in program.units.values() if u.cls == SETTINGS}


def settings_problems(
    reads: Reads, infra: Infra, defaulted: dict[str, str] = DELIBERATELY_DEFAULTED
) -> list[str]:
    problems = []
    envs = function_env(infra)
    common = set(infra.locals["common_env"])
    set_anywhere = set().union(*(set(env) for env in envs.values()))
    for variable in sorted(reads.anywhere - set_anywhere - set(defaulted)):
        problems.append(f"{variable}: read by the code, neither set by infra nor DELIBERATELY_DEFAULTED")
    for variable in sorted(set_anywhere - reads.anywhere):
        problems.append(f"{variable}: set by infra, read by no code")
    for variable in sorted(set(defaulted) & set_anywhere):
        problems.append(f"{variable}: DELIBERATELY_DEFAULTED, yet infra sets it")
    for variable in sorted(set(defaulted) - reads.anywhere):
        problems.append(f"{variable}: DELIBERATELY_DEFAULTED but no code reads it")
    for name, env in sorted(envs.items()):
        used = reads.by_function.get(name, set())
        # Read on this function's path, set by infra for other functions only:
        # this one would silently run on the code's default.
        for variable in sorted(used - set(env) - set(defaulted)):
            problems.append(f"{name}: its code reads {variable}, which infra does not give it")
        # Given to this function alone (not to all), but its code never uses it.
        for variable in sorted(set(env) - common - used):
            problems.append(f"{name}: infra gives it {variable}, which its code path never reads")
    return problems


def test_config_lists_every_variable_it_reads(code: Code) -> None:
    # ENV_VARS is what the local stack and test_infra trust; it must be what from_env reads.
    from pixme.config import ENV_VARS

    listed_vars = set(ENV_VARS)
    read = set().union(*from_env_reads(code.program).values())
    assert listed_vars == read, {"listed, unread": listed_vars - read, "read, unlisted": read - listed_vars}


def test_every_setting_is_set_where_it_is_read(code: Code, infra: Infra) -> None:
    reads = environment_reads(code)
    # The reader sees what it must: the bucket names on every path, the
    # token-checking settings on the public ones, the signer where URLs are signed.
    assert all({"PIXME_UPLOADS_BUCKET", "PIXME_ASSETS_BUCKET"} <= r for r in reads.by_function.values())
    assert "PIXME_APP_CHECK" in reads.by_function["generate"]
    assert "PIXME_APP_CHECK" not in reads.by_function["cleanup"]
    assert SIGNING_ACCOUNT in reads.by_function["uploads"]
    assert SIGNING_ACCOUNT not in reads.by_function["on_upload"]
    assert settings_problems(reads, infra) == []


# === 3. Firestore indexes ===============================================================

EQUALITY = {"==", "in", "array_contains", "array_contains_any"}
ORDERS = ("ASCENDING", "DESCENDING")


@dataclass(frozen=True)
class Indexes:
    composite: list[tuple[str, str, tuple[tuple[str, str], ...]]]  # (collection, scope, fields)
    # (collection, field) -> the single-field indexes left, as (scope, order);
    # absent: the automatic ones (both orders, collection scope).
    overrides: dict[tuple[str, str], set[tuple[str, str]]]


def declared_indexes(infra: Infra) -> Indexes:
    composite = []
    for body in infra.resources.get("google_firestore_index", {}).values():
        fields = tuple((f["field_path"], f.get("order", f.get("array_config", ""))) for f in body["fields"])
        composite.append((body["collection"], body.get("query_scope", "COLLECTION"), fields))
    overrides: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for body in infra.resources.get("google_firestore_field", {}).values():
        if "index_config" not in body:
            continue  # no override: the field keeps its automatic indexes
        collections = (
            listed(body["for_each"]) if body.get("collection") == "${each.key}" else {body["collection"]}
        )
        # An empty index_config block disables every single-field index of the field.
        kept = {
            (i.get("query_scope", "COLLECTION"), i.get("order", i.get("array_config", "")))
            for config in body["index_config"]
            for i in config.get("indexes", [])
        }
        for collection in collections:
            overrides[(collection, body["field"])] = kept
    return Indexes(composite, overrides)


def _single_field(indexes: Indexes, query: Query, field_: str, order: str | None) -> bool:
    """Whether a single-field index on `field_` (in `order`, or either) serves this query's scope."""
    scope = "COLLECTION_GROUP" if query.group else "COLLECTION"
    kept = indexes.overrides.get((query.collection, field_))
    if kept is None:  # automatic: both orders, collection scope only
        kept = {("COLLECTION", o) for o in ORDERS}
    return any(s == scope and (order is None or o == order) for s, o in kept)


def index_problem(query: Query, indexes: Indexes) -> str | None:
    """Why no index serves `query`, or None.

    Firestore's rules (https://firebase.google.com/docs/firestore/query-data/index-overview):
    single-field indexes serve an equality, a range or an order on one field,
    and several equalities at once (index merging); an equality or a range on
    one field with an order (or a range) on another needs a composite index
    whose fields are the equalities, then the orders, directions matching.
    """
    equalities = [f for f, op in query.filters if op in EQUALITY]
    ranges = [f for f, op in query.filters if op not in EQUALITY]
    orders = list(query.orders)
    if ranges and not orders:
        orders = [(ranges[0], "ASCENDING")]  # Firestore orders by the range field first
    fields = set(equalities) | set(ranges) | {f for f, _ in orders}
    label = f"{query.where} {query.collection}{' (group)' if query.group else ''}"
    if not fields:
        return None  # a whole collection, by document name
    if len(fields) == 1:
        (only,) = fields
        order = orders[0][1] if orders else None
        if _single_field(indexes, query, only, order):
            return None
        return f"{label}: no single-field index on {only} (disabled, or a group query without one)"
    if not ranges and not orders:
        missing = [f for f in equalities if not _single_field(indexes, query, f, None)]
        return f"{label}: equalities merge single-field indexes, none on {missing}" if missing else None
    scope = "COLLECTION_GROUP" if query.group else "COLLECTION"
    for collection, index_scope, index_fields in indexes.composite:
        if (collection, index_scope) != (query.collection, scope):
            continue
        head, tail = index_fields[: len(equalities)], index_fields[len(equalities) :]
        if {f for f, _ in head} == set(equalities) and list(tail) == orders:
            return None
    wanted = [*((f, "ASCENDING") for f in equalities), *orders]
    return f"{label}: needs a composite index {wanted}"


def index_problems(queries: list[Query], infra: Infra) -> list[str]:
    indexes = declared_indexes(infra)
    return [problem for q in queries if (problem := index_problem(q, indexes)) is not None]


def test_the_reader_finds_every_kind_of_query(code: Code) -> None:
    queries = firestore_queries(code.program)
    # What the adapter does, as the reader must see it (if this fails, the
    # reader or the adapter changed: look at both before adjusting).
    assert {q.collection for q in queries} >= {
        "uploads",
        "sessions",
        "turns",
        "idempotency",
        "usage",
        "budget",
    }
    assert any(
        q.orders == (("updated_at", "DESCENDING"),) and q.filters == (("owner", "=="),) for q in queries
    )
    assert {q.orders for q in queries if q.collection == "turns"} >= {
        (("created_at", "ASCENDING"),), (("created_at", "DESCENDING"),)
    }  # fmt: skip
    expiring = {q.collection for q in queries if q.filters == (("expires_at", "<="),)}
    assert expiring == {"uploads", "sessions", "idempotency", "usage", "budget"}


def test_every_firestore_query_has_an_index(code: Code, infra: Infra) -> None:
    assert index_problems(firestore_queries(code.program), infra) == []


def test_every_composite_index_serves_a_query(code: Code, infra: Infra) -> None:
    # A composite index no query needs costs a write per document for nothing.
    queries = firestore_queries(code.program)
    indexes = declared_indexes(infra)
    for entry in indexes.composite:
        without = Indexes([e for e in indexes.composite if e != entry], indexes.overrides)
        assert any(index_problem(q, without) for q in queries), f"no query needs {entry}"


# === 4. roles ============================================================================

GET, LIST, CREATE, UPDATE, DELETE = (
    "storage.objects.get", "storage.objects.list", "storage.objects.create",
    "storage.objects.update", "storage.objects.delete",
)  # fmt: skip
SIGN_BLOB = "iam.serviceAccounts.signBlob"
PREDICT = "aiplatform.endpoints.predict"
ENTITY_READ = {"datastore.entities.get", "datastore.entities.list"}
ENTITY_WRITE = {"datastore.entities.create", "datastore.entities.update", "datastore.entities.delete"}

# google-cloud-storage calls -> the permissions they need.
# https://cloud.google.com/storage/docs/access-control/iam-json (objects.get,
# insert, delete, list); replacing an existing object also needs delete
# (footnote there, and iam-xml), and a write may replace: a retried event or
# request rewrites the same name.
STORAGE_CALLS = {
    "download_as_bytes": {GET},
    "upload_from_string": {CREATE, DELETE},
    "delete": {DELETE},
    "list_blobs": {LIST},
    # With service_account_email and access_token, the client signs through
    # the IAM Credentials signBlob API as that account
    # (https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signBlob).
    "generate_signed_url": {SIGN_BLOB},
}
# A signed URL acts with the signer's permissions: what its method needs
# (https://cloud.google.com/storage/docs/access-control/signed-urls).
SIGNED_METHODS = {"GET": {GET}, "PUT": {CREATE}}
# google-cloud-firestore calls -> permissions
# (https://cloud.google.com/firestore/docs/security/iam#permissions). A
# document get() takes no positional argument (dict.get does) and a write's
# update() takes a positional mapping (dict.update(k=v) does not).
FIRESTORE_READS = {"stream": ENTITY_READ, "get": {"datastore.entities.get"}}
FIRESTORE_WRITES = {
    "create": {"datastore.entities.create"},
    "set": {"datastore.entities.create", "datastore.entities.update"},
    "update": {"datastore.entities.update"},
    "delete": {"datastore.entities.delete"},
    "recursive_delete": {"datastore.entities.list", "datastore.entities.delete"},
}
# google-genai on Vertex AI: generateContent checks aiplatform.endpoints.predict
# (https://cloud.google.com/vertex-ai/generative-ai/docs/access-control).
MODEL_CALLS = {"generate_content": {PREDICT}}
# Adapters whose calls go to no IAM-checked Google API: they fetch public
# keys (Firebase's token certificates, App Check's JWKS) over plain HTTPS.
NO_IAM = {"pixme.adapters.auth", "pixme.adapters.appcheck", "pixme.adapters"}
GCS_MODULE, FIRESTORE_MODULE, MODEL_MODULE = (
    "pixme.adapters.gcs",
    "pixme.adapters.firestore",
    "pixme.adapters.gemini",
)
ADAPTER_CALLS = {
    GCS_MODULE: STORAGE_CALLS,
    FIRESTORE_MODULE: FIRESTORE_READS | FIRESTORE_WRITES,
    MODEL_MODULE: MODEL_CALLS,
}
# Imports that would mean an IAM-checked Google API call.
GOOGLE_CLIENTS = (
    "google.cloud",
    "google.genai",
    "google.auth.transport",
    "googleapiclient",
    "google.auth.default",
)

# Predefined roles: the permissions they include among those above
# (https://cloud.google.com/storage/docs/access-control/iam-roles,
# https://cloud.google.com/firestore/docs/security/iam#roles,
# https://cloud.google.com/iam/docs/service-account-permissions).
PREDEFINED = {
    "roles/storage.objectViewer": {GET, LIST},
    "roles/storage.objectCreator": {CREATE},
    "roles/storage.objectUser": {GET, LIST, CREATE, UPDATE, DELETE},
    "roles/datastore.viewer": ENTITY_READ,
    "roles/datastore.user": ENTITY_READ | ENTITY_WRITE,
    "roles/iam.serviceAccountTokenCreator": {SIGN_BLOB},
}
MODELED = set().union(*PREDEFINED.values(), {PREDICT})

Resource = tuple[str, str]  # ("bucket", "uploads"), ("project", ""), ("service_account", "api")


def adapter_permissions(program: Program, units: Iterable[str], module: str) -> set[str]:
    """The permissions the Google client calls made in `module`'s units need
    (calls on values the reader has no type for: the clients' objects)."""
    table = ADAPTER_CALLS[module]
    needed: set[str] = set()
    for name in units:
        unit = program.units[name]
        if unit.module != module:
            continue
        program.env(unit)
        for node in ast.walk(unit.node):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr = node.func.attr
            if program.type_of(node.func.value, unit) is not None or attr not in table:
                continue
            if (attr == "get" and node.args) or (attr == "update" and not node.args):
                continue  # dict.get(key), dict.update(key=value)
            needed |= table[attr]
    return needed


def needed_permissions(code: Code, infra: Infra) -> dict[str, dict[Resource, set[str]]]:
    """Function -> resource -> the permissions its code path uses there."""
    program = code.program
    event_bucket = _event_bucket(infra)
    envs = function_env(infra)
    specs = infra.locals["function_specs"]
    needs: dict[str, dict[Resource, set[str]]] = {}
    for name, units in code.reachable.items():
        need: dict[Resource, set[str]] = {}
        for unit, call, method in program.calls_on(units, GCS):
            if unit.cls == GCS:
                continue  # the adapter calling itself: counted through the caller's call
            adapter = program.units[f"{GCS}.{method}"]
            perms = adapter_permissions(program, program.reachable(adapter.qualname), GCS_MODULE)
            bucket_arg = program.argument(call, adapter.node, "bucket", method=True)
            assert bucket_arg is not None, unit.where(call)
            buckets = {event_bucket if b == EVENT else b
                       for b in program.values(bucket_arg, unit, code.buckets)}  # fmt: skip
            if SIGN_BLOB in perms:
                perms.discard(SIGN_BLOB)
                method_arg = program.argument(call, adapter.node, "method", method=True)
                verb = ast.literal_eval(method_arg) if method_arg is not None else None
                assert verb in SIGNED_METHODS, f"{unit.where(call)}: signed URL method {verb!r}"
                perms |= SIGNED_METHODS[verb]
                # Signed as the configured account, else the runtime's own (gcs.py).
                configured = envs[name].get(SIGNING_ACCOUNT)
                signer = sa_name(configured) if configured else specs[name]["identity"]
                assert signer, f"{name}: {SIGNING_ACCOUNT}={configured} names none of our accounts"
                need.setdefault(("service_account", signer), set()).add(SIGN_BLOB)
            for bucket in buckets:
                need.setdefault(("bucket", bucket), set()).update(perms)
        project = adapter_permissions(program, units, FIRESTORE_MODULE)
        project |= adapter_permissions(program, units, MODEL_MODULE)
        if project:
            need[("project", "")] = project
        needs[name] = need
    return needs


def _event_bucket(infra: Infra) -> str:
    """The bucket label (local.buckets) the storage trigger watches."""
    fn = infra.resource("google_cloudfunctions2_function", "fn")
    (trigger,) = [d["event_trigger"] for d in fn["dynamic"] if "event_trigger" in d]
    (bucket,) = [f["value"] for f in trigger["content"][0]["event_filters"] if f["attribute"] == "bucket"]
    labels = [label for label, ref in infra.locals["buckets"].items() if ref == bucket]
    assert len(labels) == 1, f"the trigger's bucket {bucket} is none of local.buckets"
    return str(labels[0])


def role_permissions(infra: Infra, role: str) -> set[str]:
    """A role's permissions: predefined ones from PREDEFINED, custom ones from iam.tf."""
    if role in PREDEFINED:
        return PREDEFINED[role]
    local = re.fullmatch(r"\$\{local\.(\w+)\}", role)
    if local:
        role = infra.locals[local.group(1)]
    custom = re.fullmatch(r"\$\{google_project_iam_custom_role\.(\w+)\.name\}", role)
    if custom:
        return set(infra.resource("google_project_iam_custom_role", custom.group(1)).get("permissions", []))
    raise AssertionError(f"unknown role {role}: add it to PREDEFINED with its source")


def granted_permissions(infra: Infra) -> dict[str, dict[Resource, set[str]]]:
    """Runtime identity -> resource -> the modeled permissions its grants give
    (the build, trigger and scheduler accounts run none of the code)."""
    granted: dict[str, dict[Resource, set[str]]] = {}
    runtimes = {spec["identity"] for spec in infra.locals["function_specs"].values()}

    def grant(identity: str | None, resource: Resource, role: str) -> None:
        if identity is not None and identity in runtimes:
            perms = role_permissions(infra, role) & MODELED
            granted.setdefault(identity, {}).setdefault(resource, set()).update(perms)

    buckets = infra.resource("google_storage_bucket_iam_member", "buckets")
    assert buckets.get("member") == "serviceAccount:${google_service_account.sa[each.value.identity].email}"
    for entry in infra.locals["bucket_roles"].values():
        grant(entry["identity"], ("bucket", entry["bucket"]), entry["role"])
    for entry in infra.locals["project_roles"].values():
        grant(sa_name(entry["member"]), ("project", ""), entry["role"])
    for name, body in infra.resources.get("google_service_account_iam_member", {}).items():
        if body.get("for_each") == "${local.signing_identities}":
            # Each account of the set, on itself.
            assert body["member"] == "serviceAccount:${google_service_account.sa[each.key].email}", name
            assert body["service_account_id"] == "${google_service_account.sa[each.key].name}", name
            for identity in listed(infra.locals["signing_identities"]):
                grant(identity, ("service_account", identity), body["role"])
        else:
            target = sa_name(body["service_account_id"])
            if target is not None:
                grant(sa_name(body["member"]), ("service_account", target), body["role"])
    return granted


def by_identity(
    needs: dict[str, dict[Resource, set[str]]], infra: Infra
) -> dict[str, dict[Resource, set[str]]]:
    merged: dict[str, dict[Resource, set[str]]] = {}
    for name, need in needs.items():
        identity = infra.locals["function_specs"][name]["identity"]
        for resource, perms in need.items():
            merged.setdefault(identity, {}).setdefault(resource, set()).update(perms)
    return merged


def missing_permissions(needs: dict[str, dict[Resource, set[str]]], infra: Infra) -> list[str]:
    granted = granted_permissions(infra)
    problems = []
    for identity, need in sorted(by_identity(needs, infra).items()):
        for resource, perms in sorted(need.items()):
            lacking = perms - granted.get(identity, {}).get(resource, set())
            if lacking:
                problems.append(f"{identity} lacks {sorted(lacking)} on {resource[0]} {resource[1]}".rstrip())
    return problems


def excess_permissions(
    needs: dict[str, dict[Resource, set[str]]], infra: Infra
) -> dict[tuple[str, Resource], set[str]]:
    """Modeled permissions a runtime identity holds that its code paths never use."""
    need = by_identity(needs, infra)
    excess = {}
    for identity, resources in granted_permissions(infra).items():
        for resource, perms in resources.items():
            extra = perms - need.get(identity, {}).get(resource, set())
            if extra:
                excess[(identity, resource)] = extra
    return excess


def avoidable(excess: set[str], needed: set[str], infra: Infra, resource: Resource) -> set[str]:
    """The part of `excess` some combination of the roles infra can grant there avoids."""
    if resource[0] != "bucket":
        candidates = [r for r in PREDEFINED if not r.startswith("roles/storage.")]
    else:
        candidates = [r for r in PREDEFINED if r.startswith("roles/storage.")]
        candidates += [f"${{local.{n}}}" for n in ("object_deleter", "object_lister") if n in infra.locals]
    best = None
    for size in range(1, len(candidates) + 1):
        for combo in itertools.combinations(candidates, size):
            perms = set().union(*(role_permissions(infra, r) for r in combo)) & MODELED
            if needed <= perms and (best is None or len(perms - needed) < len(best)):
                best = perms - needed
    return excess - (best if best is not None else excess)


# Over-grants found by this file and not yet narrowed: test_infra.py's
# BUCKET_ACCESS pins today's grants, and changing them is a decision for
# whoever owns infra/iam.tf (reported). Each names what would avoid it.
KNOWN_OVER_GRANTS: dict[tuple[str, Resource], tuple[set[str], str]] = {
    ("ingest", ("bucket", "assets")): (
        {LIST},
        "without list, Cloud Storage may answer 403 for a missing object; removing one must succeed",
    ),
    ("cleanup", ("bucket", "uploads")): (
        {LIST},
        "originals go by name and are often gone: without list a missing one may answer 403, not 404",
    ),
}


def test_every_identity_holds_what_its_code_uses(code: Code, infra: Infra) -> None:
    needs = needed_permissions(code, infra)
    # The reader sees each kind of operation where it happens.
    assert needs["uploads"][("bucket", "uploads")] == {CREATE, DELETE}  # the signed PUT, and DELETE
    assert needs["on_upload"][("bucket", "uploads")] == {GET, DELETE}  # the event's object
    assert PREDICT in needs["generate"][("project", "")] and PREDICT not in needs["account"][("project", "")]
    assert needs["sessions"][("service_account", "sessions")] == {SIGN_BLOB}
    assert ("bucket", "uploads") not in needs["sessions"]
    # PREDICT is what a model call needs on Vertex AI, where infra sends it.
    envs = function_env(infra)
    for name, need in needs.items():
        if PREDICT in need.get(("project", ""), set()):
            assert envs[name]["GOOGLE_GENAI_USE_VERTEXAI"] == "true", name
    assert missing_permissions(needs, infra) == []


def test_no_identity_holds_an_avoidable_permission_it_never_uses(code: Code, infra: Infra) -> None:
    per_function = needed_permissions(code, infra)
    needs = by_identity(per_function, infra)
    found = {}
    for (identity, resource), extra in excess_permissions(per_function, infra).items():
        if resource[0] == "bucket" or resource[0] == "project":
            part = avoidable(extra, needs.get(identity, {}).get(resource, set()), infra, resource)
            if part:
                found[(identity, resource)] = part
        else:
            found[(identity, resource)] = extra
    assert found == {key: perms for key, (perms, _) in KNOWN_OVER_GRANTS.items()}


VERTEX_AGENT = "serviceAccount:${google_project_service_identity.aiplatform.email}"


def model_reference_buckets(code: Code) -> dict[str, set[str]]:
    """Function -> the buckets its code hands the model as gs:// references.

    Vertex AI reads those objects itself, as its service agent, not as the
    caller (iam.tf, vertex_reads_assets)."""
    program = code.program
    found: dict[str, set[str]] = {}
    for name, units in code.reachable.items():
        for unit_name in units:
            unit = program.units[unit_name]
            program.env(unit)
            for node in ast.walk(unit.node):
                if (
                    isinstance(node, ast.JoinedStr)
                    and len(node.values) >= 2
                    and isinstance(node.values[0], ast.Constant)
                    and node.values[0].value == "gs://"
                    and isinstance(node.values[1], ast.FormattedValue)
                ):
                    buckets = program.values(node.values[1].value, unit, code.buckets)
                    found.setdefault(name, set()).update(buckets)
    return found


def agent_problems(code: Code, infra: Infra) -> list[str]:
    labels = {ref: label for label, ref in infra.locals["buckets"].items()}
    held: dict[str, set[str]] = {}
    for body in infra.resources.get("google_storage_bucket_iam_member", {}).values():
        if body.get("member") == VERTEX_AGENT and body.get("bucket") in labels:
            perms = role_permissions(infra, body["role"])
            held.setdefault(labels[body["bucket"]], set()).update(perms)
    problems = []
    for name, buckets in sorted(model_reference_buckets(code).items()):
        for bucket in sorted(buckets):
            if GET not in held.get(bucket, set()):
                problems.append(
                    f"{name} sends gs:// references into {bucket}; Vertex AI's agent cannot read it"
                )
    for bucket, perms in sorted(held.items()):
        if perms - {GET, LIST} or bucket not in set().union(*model_reference_buckets(code).values()):
            problems.append(
                f"Vertex AI's agent holds {sorted(perms)} on {bucket}, more than reading what it is sent"
            )
    return problems


def test_the_model_can_read_what_it_is_sent_by_reference(code: Code, infra: Infra) -> None:
    assert model_reference_buckets(code) == {"generate": {"assets"}, "edit": {"assets"}}
    assert agent_problems(code, infra) == []

    dropped = infra.copy()
    del dropped.resources["google_storage_bucket_iam_member"]["vertex_reads_assets"]
    assert agent_problems(code, dropped) == [
        "edit sends gs:// references into assets; Vertex AI's agent cannot read it",
        "generate sends gs:// references into assets; Vertex AI's agent cannot read it",
    ]
    moved = infra.copy()
    moved.resources["google_storage_bucket_iam_member"]["vertex_reads_assets"]["bucket"] = (
        "${google_storage_bucket.uploads.name}"
    )
    assert "Vertex AI's agent holds" in " ".join(agent_problems(code, moved))


def test_every_adapter_call_is_mapped_to_permissions(code: Code) -> None:
    # A new Google call (another client method, another adapter) must get its
    # permissions above before the role checks can be trusted.
    program = code.program
    reached = set().union(*code.reachable.values())
    adapters = {
        program.units[u].module for u in reached if program.units[u].module.startswith("pixme.adapters")
    }
    assert adapters <= set(ADAPTER_CALLS) | NO_IAM, adapters - set(ADAPTER_CALLS) - NO_IAM
    for module in NO_IAM:
        clients = [t for t in program.imports[module].values() if t.startswith(GOOGLE_CLIENTS)]
        assert not clients, f"{module} imports {clients}: map its calls in ADAPTER_CALLS"
    for name in sorted(reached):
        unit = program.units[name]
        public = unit.cls is not None and not unit.node.name.startswith("_")
        if unit.module in ADAPTER_CALLS and public:
            assert adapter_permissions(program, program.reachable(name), unit.module), (
                f"{name} makes no call ADAPTER_CALLS knows: which permission does it need?"
            )


# === the checks can fail =================================================================


def test_entry_point_check_reports_a_missing_or_mistriggered_function(code: Code, infra: Infra) -> None:
    dropped = infra.copy()
    del dropped.locals["function_specs"]["cleanup"]
    assert "cleanup: @http in main.py but not deployed" in entry_point_problems(code, dropped)

    flipped = infra.copy()
    flipped.locals["function_specs"]["on_upload"]["trigger"] = "https"
    problems = entry_point_problems(code, flipped)
    assert "on_upload: @cloud_event in main.py, deployed with trigger https" in problems
    assert "on_upload: @cloud_event but the event trigger is off" in problems

    extra = infra.copy()
    extra.locals["function_specs"]["ghost"] = {"entry_point": "ghost", "trigger": "https"}
    assert "ghost: deployed with entry point ghost, which main.py does not define" in entry_point_problems(
        code, extra
    )

    retyped = infra.copy()
    fn = retyped.resources["google_cloudfunctions2_function"]["fn"]
    fn["dynamic"][0]["event_trigger"]["content"][0]["event_type"] = "google.cloud.storage.object.v1.deleted"
    assert any(
        "delivers google.cloud.storage.object.v1.deleted" in p for p in entry_point_problems(code, retyped)
    )


def test_settings_check_reports_unread_unset_and_misplaced_variables(code: Code, infra: Infra) -> None:
    reads = environment_reads(code)

    unread = infra.copy()
    unread.locals["function_env_extra"]["cleanup"]["PIXME_GHOST"] = "1"
    problems = settings_problems(reads, unread)
    assert "PIXME_GHOST: set by infra, read by no code" in problems
    assert "cleanup: infra gives it PIXME_GHOST, which its code path never reads" in problems

    unset = infra.copy()
    unset.locals["function_env_groups"]["generate"].remove("prompts")
    assert "generate: its code reads PIXME_MAX_TEXT_CHARS, which infra does not give it" in settings_problems(
        reads, unset
    )

    misplaced = infra.copy()
    misplaced.locals["function_env_extra"]["cleanup"]["PIXME_MAX_SIDE"] = "1536"
    assert "cleanup: infra gives it PIXME_MAX_SIDE, which its code path never reads" in settings_problems(
        reads, misplaced
    )

    undecided = dict(DELIBERATELY_DEFAULTED)
    del undecided["PIXME_LOG_FORMAT"]
    assert any(
        p.startswith("PIXME_LOG_FORMAT: read by the code") for p in settings_problems(reads, infra, undecided)
    )


def test_index_check_reports_a_dropped_index_or_a_disabled_field(code: Code, infra: Infra) -> None:
    queries = firestore_queries(code.program)

    dropped = infra.copy()
    dropped.resources["google_firestore_index"].clear()
    problems = index_problems(queries, dropped)
    assert (
        len(problems) == 1
        and "sessions: needs a composite index [('owner', 'ASCENDING'), ('updated_at', 'DESCENDING')]"
        in problems[0]
    )

    # The TTL field with an empty index_config: cleanup's expires_at queries lose their index.
    disabled = infra.copy()
    disabled.resources["google_firestore_field"]["expires_at_ttl"]["index_config"] = [{}]
    problems = index_problems(queries, disabled)
    assert {p.split()[1].rstrip(":") for p in problems} == {
        "uploads",
        "sessions",
        "idempotency",
        "usage",
        "budget",
    }
    assert all("no single-field index on expires_at" in p for p in problems)

    # An order the composite index does not have.
    reversed_ = infra.copy()
    index = reversed_.resources["google_firestore_index"]["sessions_by_owner"]
    index["fields"][1]["order"] = "ASCENDING"
    assert any("needs a composite index" in p for p in index_problems(queries, reversed_))

    # A collection-group query has no automatic single-field index.
    group = Query("turns", True, (), (("created_at", "ASCENDING"),), "x.py:1")
    assert index_problem(group, declared_indexes(infra)) is not None


def test_role_check_reports_a_dropped_grant_and_an_extra_one(code: Code, infra: Infra) -> None:
    needs = needed_permissions(code, infra)

    no_delete = infra.copy()
    del no_delete.locals["bucket_roles"]["sessions_deletes_assets"]
    assert missing_permissions(needs, no_delete) == [f"sessions lacks ['{DELETE}'] on bucket assets"]

    no_model = infra.copy()
    del no_model.locals["project_roles"]["api_vertex"]
    assert missing_permissions(needs, no_model) == [f"api lacks ['{PREDICT}'] on project"]

    no_signer = infra.copy()
    no_signer.locals["signing_identities"] = '${toset(["api", "sessions", "account"])}'
    assert missing_permissions(needs, no_signer) == [
        f"uploads lacks ['{SIGN_BLOB}'] on service_account uploads"
    ]

    wrong_bucket = infra.copy()
    wrong_bucket.locals["bucket_roles"]["uploads_creates_uploads"]["bucket"] = "assets"
    assert missing_permissions(needs, wrong_bucket) == [f"uploads lacks ['{CREATE}'] on bucket uploads"]

    wider = infra.copy()
    wider.locals["bucket_roles"]["sessions_writes"] = {
        "bucket": "assets", "role": "roles/storage.objectUser", "identity": "sessions",
    }  # fmt: skip
    assert excess_permissions(needs, wider)[("sessions", ("bucket", "assets"))] == {CREATE, UPDATE}
    assert ("sessions", ("bucket", "assets")) not in excess_permissions(needs, infra)


def test_checks_report_what_an_edit_of_the_code_would_need(tmp_path: Path, infra: Infra) -> None:
    # sessions writes into the uploads bucket: a permission it does not hold, on a bucket it has no grant on.
    writes = edited_code(
        tmp_path / "a",
        "pixme.services.library",
        "        now = self.clock.now()\n        live",
        "        now = self.clock.now()\n"
        '        self.blobs.write(self.settings.uploads_bucket, "x", b"", "text/plain")\n        live',
    )
    assert missing_permissions(needed_permissions(writes, infra), infra) == [
        f"sessions lacks ['{CREATE}', '{DELETE}'] on bucket uploads"
    ]

    # cleanup reads a setting infra gives only to generate and edit.
    reads = edited_code(
        tmp_path / "b",
        "pixme.services.cleanup",
        "        now = self.clock.now()\n",
        "        now = self.clock.now()\n        assert self.settings.max_text_chars\n",
    )
    assert "cleanup: its code reads PIXME_MAX_TEXT_CHARS, which infra does not give it" in settings_problems(
        environment_reads(reads), infra
    )

    # The export lists uploads newest first in the query: equality + order needs a composite index.
    ordered = edited_code(
        tmp_path / "c",
        "pixme.adapters.firestore",
        'query = self.col.where(filter=firestore.FieldFilter("owner", "==", owner)).limit(limit)',
        'query = self.col.where(filter=firestore.FieldFilter("owner", "==", owner)).order_by("created_at")',
    )
    problems = index_problems(firestore_queries(ordered.program), infra)
    assert len(problems) == 1 and "uploads: needs a composite index" in problems[0], problems
