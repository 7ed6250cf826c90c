"""README's error-code table against the codes the code raises.

The codes are read from the source, not from a list kept beside it: every
constructor call of a PixmeError class under functions/ (main.py and the
pixme package), its first argument (or `code=`). A code passed through a
variable is followed to where it comes from: a parameter of the enclosing
function (each call of that function passes a literal), or a module-level
dict the variable is looked up in (its values). Anything else fails the
test, so a new indirection cannot hide a code.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

from pixme import errors

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
README = ROOT / "README.md"
# A permanent ingest failure: recorded as an upload's `reason`, never an HTTP answer.
REASON_CLASS = errors.Rejected
ERROR_CLASSES: dict[str, type[errors.PixmeError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.PixmeError)
}


def _sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in sorted(FUNCTIONS.rglob("*.py"))}


def _class_of(call: ast.Call) -> type[errors.PixmeError] | None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return ERROR_CLASSES.get(name)


def _code_arg(call: ast.Call) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "code":
            return kw.value
    return call.args[0] if call.args else None


def _fixed_codes() -> dict[str, str]:
    """Classes whose constructor takes no code (ConfigError): the literal they pass up."""
    fixed = {}
    for node in ast.walk(ast.parse(Path(errors.__file__).read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        for init in (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"):
            if any(a.arg == "code" for a in init.args.args):
                continue
            for call in (c for c in ast.walk(init) if isinstance(c, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "__init__" and call.args:
                    first = call.args[0]
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        fixed[node.name] = first.value
    return fixed


def _parents(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _from_parameter(name: str, fn: ast.FunctionDef, trees: dict[Path, ast.Module]) -> list[str] | None:
    params = [a.arg for a in fn.args.args]
    if name not in params:
        return None
    index, found = params.index(name), []
    for tree in trees.values():
        for call in (c for c in ast.walk(tree) if isinstance(c, ast.Call)):
            callee = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
            if callee != fn.name:
                continue
            given = next((k.value for k in call.keywords if k.arg == name), None)
            given = given or (call.args[index] if index < len(call.args) else None)
            if not (isinstance(given, ast.Constant) and isinstance(given.value, str)):
                raise AssertionError(f"{fn.name}() is called with a {name} that is not a literal")
            found.append(given.value)
    return found


def _from_lookup(name: str, fn: ast.FunctionDef, tree: ast.Module) -> list[str] | None:
    dicts = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [name]):
            continue
        value = node.value
        source = None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "get":
            source = value.func.value
        elif isinstance(value, ast.Subscript):
            source = value.value
        if isinstance(source, ast.Name) and source.id in dicts:
            values = dicts[source.id].values
            return [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return None


@cache
def raised_codes() -> dict[str, frozenset[type[errors.PixmeError]]]:
    """Every code under functions/, with the classes it is raised as."""
    trees = _sources()
    fixed = _fixed_codes()
    found: dict[str, set[type[errors.PixmeError]]] = defaultdict(set)
    unresolved = []
    for path, tree in trees.items():
        parents = _parents(tree)
        for call in (c for c in ast.walk(tree) if isinstance(c, ast.Call)):
            cls = _class_of(call)
            if cls is None:
                continue
            if cls.__name__ in fixed:
                found[fixed[cls.__name__]].add(cls)
                continue
            arg = _code_arg(call)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found[arg.value].add(cls)
                continue
            fn = parents.get(call)
            while fn is not None and not isinstance(fn, ast.FunctionDef):
                fn = parents.get(fn)
            codes = None
            if isinstance(arg, ast.Name) and fn is not None:
                codes = _from_parameter(arg.id, fn, trees) or _from_lookup(arg.id, fn, tree)
            if not codes:
                unresolved.append(f"{path.relative_to(ROOT)}:{call.lineno}")
                continue
            for code in codes:
                found[code].add(cls)
    assert not unresolved, f"codes this test cannot follow: {unresolved}"
    return {code: frozenset(classes) for code, classes in found.items()}


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


ROW = re.compile(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", re.M)


def error_table() -> dict[str, int]:
    """The API section's `| code | status | meaning |` rows."""
    rows = ROW.findall(_section("API"))
    codes = [code for code, _, _ in rows]
    assert len(codes) == len(set(codes)), "a code has two rows"
    return {code: int(status) for code, status, _ in rows}


def reason_table() -> set[str]:
    """The Ingest section's `| reason | when |` rows (the header is not one)."""
    section, header = _section("Ingest"), "| `reason` | when |\n|---|---|\n"
    rows = section[section.index(header) + len(header) :].split("\n\n")[0]
    return set(re.findall(r"^\| `([a-z_]+)` \| [^|]+ \|$", rows, re.M))


def test_the_extractor_sees_codes_of_every_kind() -> None:
    codes = raised_codes()
    # literal, fixed by the class, passed through a parameter, looked up in a dict
    for code in ("route_not_found", "misconfigured", "storage_unavailable", "model_account_limited"):
        assert code in codes, code
    assert errors.ConfigError in codes["misconfigured"]


def test_every_raised_code_has_a_row_with_its_status() -> None:
    table = error_table()
    http = {c: k for c, k in raised_codes().items() if REASON_CLASS not in k}
    assert sorted(set(http) - set(table)) == [], "codes missing from README's error table"
    wrong = {c: table[c] for c in http if table[c] not in {k.status for k in http[c]}}
    assert wrong == {}, "rows whose status is not the one the code is raised with"


def test_no_row_names_a_code_that_no_longer_exists() -> None:
    assert sorted(set(error_table()) - set(raised_codes())) == []


def test_every_ingest_rejection_is_a_reason_in_the_ingest_table() -> None:
    rejected = {c for c, k in raised_codes().items() if REASON_CLASS in k}
    assert rejected and rejected == reason_table()
