"""What the code under functions/ does, read from its source with `ast`.

Used by test_infra_agreement.py to hold infra/ against the code: which
entry points exist, which functions and methods each one can reach, which
Settings fields those read and which adapter methods they call, and with
which bucket. Nothing is imported or run: the code's dependencies need not
be installed, and what a path *could* do is what matters for permissions.

The type inference is small on purpose: parameter and return annotations,
`self.x = ...` in __init__, dataclass fields, and Protocol ports mapped to the
one adapter wiring.py builds for each. Anything it cannot follow is reported
(`Unresolved`), never guessed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = ROOT / "functions"
SETTINGS = "pixme.config.Settings"
# Where a traced value ends: (class, attribute) -> a label, e.g.
# (Settings, "assets_bucket") -> "assets".
Sources = dict[tuple[str, str], str]


class Unresolved(Exception):
    """Something the reader cannot follow: a test must fail, not assume."""


@dataclass(frozen=True)
class Ref:
    kind: str  # "module" | "class" | "instance" | "function"
    name: str  # qualified: pixme.services.uploads.Uploads, pixme.removal.remove_upload, ...


@dataclass
class Unit:
    """A module-level function or a method; nested functions and lambdas belong to it."""

    qualname: str
    module: str
    node: ast.FunctionDef
    cls: str | None
    path: Path

    def where(self, node: ast.AST) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{getattr(node, 'lineno', self.node.lineno)}"


@dataclass
class ClassInfo:
    qualname: str
    module: str
    node: ast.ClassDef
    bases: list[str] = field(default_factory=list)
    protocol: bool = False
    fields: dict[str, ast.expr] = field(default_factory=dict)  # class-level annotations


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_property(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)


def _functions_in(unit: ast.FunctionDef) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda]:
    for node in ast.walk(unit):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield node


class Program:
    """Every module under functions/, with the small type inference described above."""

    def __init__(self, root: Path = FUNCTIONS_DIR) -> None:
        self.trees: dict[str, ast.Module] = {}
        self.paths: dict[str, Path] = {}
        self.imports: dict[str, dict[str, str]] = {}
        self.units: dict[str, Unit] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.globals: dict[str, dict[str, Ref]] = {}
        for path in sorted(root.rglob("*.py")):
            module = _module_name(path, root)
            self.trees[module] = ast.parse(path.read_text(), str(path))
            self.paths[module] = path
        for module, tree in self.trees.items():
            self._index(module, tree)
        for info in self.classes.values():
            info.bases = [r.name for b in info.node.bases if (r := self.resolve(info.module, b))]
            info.protocol = any(isinstance(b, ast.Name) and b.id == "Protocol" for b in info.node.bases)
        self._envs: dict[str, dict[str, Ref]] = {}
        self._attrs: dict[str, dict[str, Ref]] = {}
        # Empty while it is computed: ports stay ports until then.
        self.implementations: dict[str, str] = {}
        self.implementations = self._implementations()

    # -- indexing ------------------------------------------------------------------

    def _index(self, module: str, tree: ast.Module) -> None:
        aliases: dict[str, str] = {}
        # Imports anywhere in the module: wiring.py and main.py import lazily inside functions.
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        self.imports[module] = aliases
        names: dict[str, Ref] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                qualname = f"{module}.{node.name}"
                self.units[qualname] = Unit(qualname, module, node, None, self.paths[module])
                names[node.name] = Ref("function", qualname)
            elif isinstance(node, ast.ClassDef):
                qualname = f"{module}.{node.name}"
                info = ClassInfo(qualname, module, node)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        name = f"{qualname}.{item.name}"
                        self.units[name] = Unit(name, module, item, qualname, self.paths[module])
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        info.fields[item.target.id] = item.annotation
                self.classes[qualname] = info
                names[node.name] = Ref("class", qualname)
        self.globals[module] = names

    def _qualified(self, name: str) -> Ref | None:
        """A dotted name as a module, class or function of the program."""
        if name in self.trees:
            return Ref("module", name)
        if name in self.classes:
            return Ref("class", name)
        if name in self.units:
            return Ref("function", name)
        return None

    def resolve(self, module: str, expr: ast.expr) -> Ref | None:
        """A name or dotted attribute at module scope (annotations, bases, globals)."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return self.resolve(module, ast.parse(expr.value, mode="eval").body)
        if isinstance(expr, ast.Name):
            if expr.id in self.globals[module]:
                return self.globals[module][expr.id]
            target = self.imports[module].get(expr.id)
            return self._qualified(target) if target else None
        if isinstance(expr, ast.Attribute):
            base = self.resolve(module, expr.value)
            if base is not None and base.kind == "module":
                return self._member(base.name, expr.attr)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
            # X | None: the X.
            return self.resolve(module, expr.left) or self.resolve(module, expr.right)
        return None

    def _member(self, module: str, name: str) -> Ref | None:
        if name in self.globals.get(module, {}):
            return self.globals[module][name]
        return self._qualified(f"{module}.{name}") or (
            self._qualified(self.imports[module][name]) if name in self.imports.get(module, {}) else None
        )

    def annotation(self, module: str, expr: ast.expr | None) -> Ref | None:
        """The instance type an annotation stands for (ports resolved later)."""
        if expr is None:
            return None
        ref = self.resolve(module, expr)
        return Ref("instance", ref.name) if ref and ref.kind == "class" else None

    # -- classes ---------------------------------------------------------------------

    def method(self, cls: str, name: str) -> Unit | None:
        """`name` on class `cls` or its bases in the program."""
        seen: list[str] = [cls]
        while seen:
            current = seen.pop(0)
            unit = self.units.get(f"{current}.{name}")
            if unit is not None:
                return unit
            if current in self.classes:
                seen.extend(self.classes[current].bases)
        return None

    def concrete(self, ref: Ref | None) -> Ref | None:
        """A port (Protocol) as the adapter wiring.py gives it."""
        if ref is not None and ref.kind == "instance" and ref.name in self.implementations:
            return Ref("instance", self.implementations[ref.name])
        return ref

    def instance_attributes(self, cls: str) -> dict[str, Ref]:
        if cls in self._attrs:
            return self._attrs[cls]
        attrs: dict[str, Ref] = {}
        self._attrs[cls] = attrs
        info = self.classes[cls]
        for name, annotation in info.fields.items():
            if (ref := self.annotation(info.module, annotation)) is not None:
                attrs[name] = ref
        init = self.units.get(f"{cls}.__init__")
        if init is not None:
            self.env(init)
            for node in ast.walk(init.node):
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        if (
                            isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "self"
                            and node.value is not None
                            and (ref := self.type_of(node.value, init)) is not None
                        ):
                            attrs.setdefault(target.attr, ref)
        for base in info.bases:
            if base in self.classes:
                for name, ref in self.instance_attributes(base).items():
                    attrs.setdefault(name, ref)
        return attrs

    def _implementations(self) -> dict[str, str]:
        """Port -> adapter, from the constructor calls of the composition root."""
        found: dict[str, set[str]] = {}
        for unit in self.units.values():
            if unit.module != "pixme.wiring":
                continue
            self.env(unit)
            for call in (n for n in ast.walk(unit.node) if isinstance(n, ast.Call)):
                made = self.type_of(call.func, unit)
                if (
                    made is None
                    or made.kind != "class"
                    or (init := self.method(made.name, "__init__")) is None
                ):
                    continue
                params = [a for a in init.node.args.args[1:]]
                bound = list(zip(params, call.args, strict=False))
                bound += [(p, k.value) for k in call.keywords for p in params if p.arg == k.arg]
                for param, arg in bound:
                    port = self.annotation(init.module, param.annotation)
                    given = self.type_of(arg, unit)
                    if port and given and port.name in self.classes and self.classes[port.name].protocol:
                        found.setdefault(port.name, set()).add(given.name)
        for protocol, adapters in found.items():
            if len(adapters) != 1:
                raise Unresolved(f"wiring.py gives {protocol} several implementations: {sorted(adapters)}")
        return {protocol: adapters.pop() for protocol, adapters in found.items()}

    # -- types of expressions ------------------------------------------------------

    def env(self, unit: Unit) -> dict[str, Ref]:
        """Local names of a unit (its nested functions included) with a known type."""
        if unit.qualname in self._envs:
            return self._envs[unit.qualname]
        env: dict[str, Ref] = {}
        self._envs[unit.qualname] = env
        for fn in _functions_in(unit.node):
            args = fn.args
            for position, arg in enumerate([*args.posonlyargs, *args.args, *args.kwonlyargs]):
                if fn is unit.node and position == 0 and unit.cls and arg.arg == "self":
                    env["self"] = Ref("instance", unit.cls)
                elif (ref := self.annotation(unit.module, arg.annotation)) is not None:
                    env.setdefault(arg.arg, ref)
        for _ in range(2):  # a second pass sees names assigned from names typed in the first
            for node in ast.walk(unit.node):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        self._bind(target, node.value, unit, env)
                elif (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and (ref := self.annotation(unit.module, node.annotation)) is not None
                ):
                    env.setdefault(node.target.id, ref)
        return env

    def _bind(self, target: ast.expr, value: ast.expr, unit: Unit, env: dict[str, Ref]) -> None:
        if isinstance(target, ast.Name):
            if target.id not in env and (ref := self.type_of(value, unit)) is not None:
                env[target.id] = ref
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts, strict=False):
                self._bind(t, v, unit, env)

    def type_of(self, expr: ast.expr, unit: Unit) -> Ref | None:
        """What `expr` is, when the reader can tell: an instance, class, function or module."""
        if isinstance(expr, ast.Name):
            local = self._envs.get(unit.qualname, {}).get(expr.id)
            if local is not None:
                return self.concrete(local)
            return self.resolve(unit.module, expr)
        if isinstance(expr, ast.Attribute):
            base = self.type_of(expr.value, unit)
            if base is None:
                return None
            if base.kind == "module":
                return self._member(base.name, expr.attr)
            if base.kind == "class" and (method := self.method(base.name, expr.attr)) is not None:
                return Ref("function", method.qualname)  # a classmethod or staticmethod
            if base.kind == "instance" and base.name in self.classes:
                method = self.method(base.name, expr.attr)
                if method is not None:
                    if _is_property(method.node):
                        return self.concrete(self.annotation(method.module, method.node.returns))
                    return Ref("function", method.qualname)
                return self.concrete(self.instance_attributes(base.name).get(expr.attr))
            return None
        if isinstance(expr, ast.Call):
            if isinstance(expr.func, ast.Name) and expr.func.id == "replace" and expr.args:
                return self.type_of(expr.args[0], unit)  # dataclasses.replace keeps the type
            callee = self.type_of(expr.func, unit)
            if callee is None:
                return None
            if callee.kind == "class":
                return Ref("instance", callee.name)
            if callee.kind == "function":
                target = self.units[callee.name]
                return self.concrete(self.annotation(target.module, target.node.returns))
        return None

    # -- what a unit reaches -------------------------------------------------------

    def callees(self, unit: Unit) -> set[str]:
        """Units referred to from `unit`: called, or passed as a value (pool.map(self._turn, ...))."""
        self.env(unit)
        found: set[str] = set()
        for node in ast.walk(unit.node):
            if isinstance(node, ast.Name | ast.Attribute) and not isinstance(node.ctx, ast.Store):
                ref = self.type_of(node, unit)
                if ref is not None and ref.kind == "function":
                    found.add(ref.name)
                elif (
                    isinstance(node, ast.Attribute)
                    and (base := self.type_of(node.value, unit)) is not None
                    and base.kind == "instance"
                    and (m := self.method(base.name, node.attr)) is not None
                ):
                    found.add(m.qualname)  # a property read runs its body
            if isinstance(node, ast.Call):
                ref = self.type_of(node.func, unit)
                if ref is not None and ref.kind == "class":
                    for special in ("__init__", "__post_init__"):
                        if (m := self.method(ref.name, special)) is not None:
                            found.add(m.qualname)
        return found

    def reachable(self, start: str) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            for callee in self.callees(self.units[todo.pop()]) - seen:
                seen.add(callee)
                todo.append(callee)
        return seen

    def attribute_reads(self, units: set[str], cls: str) -> dict[str, set[str]]:
        """attribute -> where: every `x.attr` read in `units` with x an instance of `cls`."""
        reads: dict[str, set[str]] = {}
        for name in units:
            unit = self.units[name]
            self.env(unit)
            for node in ast.walk(unit.node):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    base = self.type_of(node.value, unit)
                    if base == Ref("instance", cls):
                        reads.setdefault(node.attr, set()).add(unit.where(node))
        return reads

    def calls_on(self, units: set[str], cls: str) -> Iterator[tuple[Unit, ast.Call, str]]:
        """Every call `x.method(...)` in `units` with x an instance of `cls`."""
        for name in sorted(units):
            unit = self.units[name]
            self.env(unit)
            for node in ast.walk(unit.node):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    base = self.type_of(node.func.value, unit)
                    if base == Ref("instance", cls):
                        yield unit, node, node.func.attr

    # -- where a value comes from ---------------------------------------------------

    def call_sites(self, callee: str) -> Iterator[tuple[Unit, ast.Call]]:
        for unit in self.units.values():
            self.env(unit)
            for node in ast.walk(unit.node):
                if isinstance(node, ast.Call):
                    ref = self.type_of(node.func, unit)
                    if ref is not None and ref.kind in ("function", "class"):
                        target = ref.name if ref.kind == "function" else f"{ref.name}.__init__"
                        if target == callee:
                            yield unit, node

    def argument(self, call: ast.Call, fn: ast.FunctionDef, name: str, method: bool) -> ast.expr | None:
        """The expression `call` passes for parameter `name` of `fn` (its default if none)."""
        positional = [a.arg for a in fn.args.args]
        for keyword in call.keywords:
            if keyword.arg == name:
                return keyword.value
        params = positional[1:] if method else positional
        if name in params and params.index(name) < len(call.args):
            return call.args[params.index(name)]
        defaults = dict(
            zip(positional[len(positional) - len(fn.args.defaults) :], fn.args.defaults, strict=True)
        )
        for arg, default in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True):
            if default is not None:
                defaults[arg.arg] = default
        return defaults.get(name)

    def values(self, expr: ast.expr, unit: Unit, attrs: Sources, depth: int = 0) -> set[str]:
        """What a string-valued expression can be, by following it back through
        names, parameters (every call site), loops, comprehensions and dataclass
        fields, down to an attribute named in `attrs` (e.g. Settings.uploads_bucket
        -> "uploads"). Raises Unresolved where the trail ends."""
        if depth > 30:
            raise Unresolved(f"{unit.where(expr)}: too deep a trail for {ast.unparse(expr)}")

        def follow(e: ast.expr, u: Unit = unit) -> set[str]:
            return self.values(e, u, attrs, depth + 1)

        self.env(unit)
        if isinstance(expr, ast.Attribute):
            base = self.type_of(expr.value, unit)
            if base is not None and base.kind == "instance" and (base.name, expr.attr) in attrs:
                return {attrs[(base.name, expr.attr)]}
            if base is not None and base.kind == "instance" and expr.attr in self._fields(base.name):
                return self._field_values(base.name, expr.attr, attrs, depth)
        if isinstance(expr, ast.Name):
            found: set[str] = set()
            bindings = list(self._bindings(expr.id, unit))
            if not bindings:
                raise Unresolved(f"{unit.where(expr)}: no binding for {expr.id}")
            for kind, node, index in bindings:
                if kind == "value" and index is None:
                    assert isinstance(node, ast.expr)
                    found |= follow(node)
                elif kind == "value" and index is not None:
                    found |= self.elements(node, index, unit, attrs, depth)
                elif kind == "param":
                    assert isinstance(node, ast.FunctionDef)
                    found |= self._parameter_values(node, expr.id, unit, attrs, depth)
                else:
                    raise Unresolved(f"{unit.where(expr)}: {expr.id} is a list, not a value")
            return found
        raise Unresolved(f"{unit.where(expr)}: cannot tell the value of {ast.unparse(expr)}")

    def _fields(self, cls: str) -> set[str]:
        return set(self.classes[cls].fields) if cls in self.classes else set()

    def _field_values(self, cls: str, name: str, attrs: Sources, depth: int) -> set[str]:
        """Every value written into dataclass field `name`: constructor keywords and replace()."""
        found: set[str] = set()
        for unit in self.units.values():
            self.env(unit)
            for node in ast.walk(unit.node):
                if not isinstance(node, ast.Call):
                    continue
                made = self.type_of(node, unit)
                if made != Ref("instance", cls):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == name:
                        found |= self.values(keyword.value, unit, attrs, depth + 1)
        if not found:
            raise Unresolved(f"nothing sets {cls}.{name}")
        return found

    def _parameter_values(
        self, fn: ast.FunctionDef, name: str, unit: Unit, attrs: Sources, depth: int
    ) -> set[str]:
        found: set[str] = set()
        if fn is unit.node:
            sites = list(self.call_sites(unit.qualname))
            method = unit.cls is not None
        else:  # a nested function: called by name inside its unit
            sites = [
                (unit, n)
                for n in ast.walk(unit.node)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == fn.name
            ]
            method = False
        if not sites:
            raise Unresolved(f"{unit.where(fn)}: {fn.name} is never called, so {name} is unknown")
        for site_unit, call in sites:
            arg = self.argument(call, fn, name, method)
            if arg is None:
                raise Unresolved(f"{site_unit.where(call)}: no argument for {name}")
            found |= self.values(arg, site_unit, attrs, depth + 1)
        return found

    def _bindings(self, name: str, unit: Unit) -> Iterator[tuple[str, ast.AST, int | None]]:
        """("value", expr, None): name = expr; ("value", iterable, i): item i of the
        tuples an iterable yields, the name being a loop or comprehension target
        (-1: the items themselves); ("item", [x], None): name.append(x);
        ("param", fn, None): a parameter of fn."""
        for fn in _functions_in(unit.node):
            if isinstance(fn, ast.FunctionDef) and any(a.arg == name for a in fn.args.args):
                yield "param", fn, None
        for node in ast.walk(unit.node):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    yield from _target_bindings(target, node.value, name)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
                yield from _target_bindings(node.target, node.value, name)
            elif isinstance(node, ast.For | ast.comprehension):
                yield from _loop_bindings(node.target, node.iter, name)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "append"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == name
            ):
                yield "item", ast.List(elts=node.args, ctx=ast.Load()), None

    def elements(self, expr: ast.AST, index: int, unit: Unit, attrs: Sources, depth: int) -> set[str]:
        """The values of item `index` of the tuples an iterable yields (-1: the items themselves)."""

        def item(e: ast.expr, u: Unit = unit) -> set[str]:
            if index == -1:
                return self.values(e, u, attrs, depth + 1)
            if isinstance(e, ast.Tuple):
                return self.values(e.elts[index], u, attrs, depth + 1)
            raise Unresolved(f"{u.where(e)}: {ast.unparse(e)} is not a tuple")

        if isinstance(expr, ast.List | ast.Tuple):
            return set().union(*(item(e) for e in expr.elts)) if expr.elts else set()
        if isinstance(expr, ast.ListComp | ast.GeneratorExp):
            return item(expr.elt)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self.elements(expr.left, index, unit, attrs, depth) | self.elements(
                expr.right, index, unit, attrs, depth
            )
        if isinstance(expr, ast.Name):
            found: set[str] = set()
            for kind, node, inner in self._bindings(expr.id, unit):
                if kind == "item":  # name.append(x): x is an item
                    assert isinstance(node, ast.List)
                    found |= set().union(*(item(e) for e in node.elts))
                elif kind == "value" and inner is None:
                    found |= self.elements(node, index, unit, attrs, depth)
                else:
                    raise Unresolved(f"{unit.where(expr)}: cannot list the items of {expr.id}")
            return found
        if isinstance(expr, ast.Call):
            ref = self.type_of(expr.func, unit)
            if ref is not None and ref.kind == "function":
                callee = self.units[ref.name]
                returns = [n.value for n in ast.walk(callee.node) if isinstance(n, ast.Return) and n.value]
                return set().union(*(self.elements(r, index, callee, attrs, depth + 1) for r in returns))
        raise Unresolved(f"{unit.where(expr)}: cannot list the items of {ast.dump(expr)[:80]}")


def _target_bindings(
    target: ast.expr, value: ast.expr, name: str
) -> Iterator[tuple[str, ast.AST, int | None]]:
    if isinstance(target, ast.Name) and target.id == name:
        yield "value", value, None
    elif isinstance(target, ast.Tuple):
        for position, element in enumerate(target.elts):
            if isinstance(element, ast.Name) and element.id == name:
                if isinstance(value, ast.Tuple):
                    yield "value", value.elts[position], None
                else:
                    yield "value", value, position


def _loop_bindings(
    target: ast.expr, iterable: ast.expr, name: str
) -> Iterator[tuple[str, ast.AST, int | None]]:
    if isinstance(target, ast.Name) and target.id == name:
        yield "value", iterable, -1
    elif isinstance(target, ast.Tuple):
        for position, element in enumerate(target.elts):
            if isinstance(element, ast.Name) and element.id == name:
                yield "value", iterable, position


# -- Firestore queries ---------------------------------------------------------------

FIRESTORE_ADAPTER = "pixme.adapters.firestore"
# Calls that narrow or page a query without changing which index serves it.
_QUERY_PASSTHROUGH = {
    "limit",
    "limit_to_last",
    "offset",
    "start_after",
    "start_at",
    "end_before",
    "end_at",
    "select",
}


@dataclass(frozen=True)
class Query:
    """One query shape: what an index must serve."""

    collection: str
    group: bool  # a collection-group query (every collection with this id)
    filters: tuple[tuple[str, str], ...] = ()  # (field, operator)
    orders: tuple[tuple[str, str], ...] = ()  # (field, ASCENDING | DESCENDING)
    where: str = ""


def firestore_queries(program: Program, module: str = FIRESTORE_ADAPTER) -> list[Query]:
    """Every query the adapter runs (`.stream()`, or `.get()` on a query), each
    shape it can take: collections, filters and orders followed back through
    variables, attributes set in __init__ and parameters (every call site)."""
    found: set[Query] = set()
    for unit in program.units.values():
        if unit.module != module:
            continue
        for node in ast.walk(unit.node):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and (node.func.attr == "stream" or (node.func.attr == "get" and not node.args))
            ):
                for shape in _query_shapes(program, node.func.value, unit, 0):
                    if shape is not None:
                        found.add(dataclasses_replace(shape, where=unit.where(node)))
    return sorted(found, key=lambda q: (q.collection, q.filters, q.orders, q.where))


def dataclasses_replace(query: Query, where: str) -> Query:
    return Query(query.collection, query.group, query.filters, query.orders, where)


def _query_shapes(
    program: Program, expr: ast.expr, unit: Unit, depth: int, seen: frozenset[tuple[str, str]] = frozenset()
) -> set[Query | None]:
    """The shapes `expr` can be; None for a value that is not a query (a document, a snapshot).

    `seen`: the names being followed, so `query = query.start_after(c)` adds
    nothing instead of looping."""
    if depth > 30:
        raise Unresolved(f"{unit.where(expr)}: too deep a trail for {ast.unparse(expr)}")

    def again(e: ast.expr, u: Unit = unit) -> set[Query | None]:
        return _query_shapes(program, e, u, depth + 1, seen)

    if isinstance(expr, ast.IfExp):
        return again(expr.body) | again(expr.orelse)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        method, base = expr.func.attr, expr.func.value
        if method in ("collection", "collection_group"):
            name = expr.args[0] if expr.args else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                raise Unresolved(f"{unit.where(expr)}: collection name is not a literal")
            return {Query(name.value, method == "collection_group")}
        if method == "where":
            field_, op = _filter(expr, unit)
            return {
                q and Query(q.collection, q.group, (*q.filters, (field_, op)), q.orders) for q in again(base)
            }
        if method == "order_by":
            path = expr.args[0] if expr.args else None
            if not (isinstance(path, ast.Constant) and isinstance(path.value, str)):
                raise Unresolved(f"{unit.where(expr)}: order_by field is not a literal")
            directions = _directions(program, expr, unit)
            return {
                q and Query(q.collection, q.group, q.filters, (*q.orders, (path.value, d)))
                for q in again(base)
                for d in directions
            }
        if method in _QUERY_PASSTHROUGH:
            return again(base)
        return {None}  # document(), get(), batch(): not a query
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        init = program.units.get(f"{unit.cls}.__init__")
        assigned = [
            n.value
            for n in ast.walk(init.node)
            if init is not None and isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Attribute) and t.attr == expr.attr
        ] if init else []  # fmt: skip
        if not assigned or init is None:
            return {None}
        return set().union(*(again(v, init) for v in assigned))
    if isinstance(expr, ast.Name):
        if (unit.qualname, expr.id) in seen:
            return set()
        seen = seen | {(unit.qualname, expr.id)}
        shapes: set[Query | None] = set()
        for kind, node, index in program._bindings(expr.id, unit):
            if kind == "value" and index is None:
                assert isinstance(node, ast.expr)
                shapes |= again(node)
            elif kind == "value" and isinstance(node, ast.Tuple | ast.List) and index == -1:
                shapes |= set().union(*(again(e) for e in node.elts))
            elif kind == "param":
                assert isinstance(node, ast.FunctionDef)
                if node is not unit.node:
                    return {None}
                for site, call in program.call_sites(unit.qualname):
                    arg = program.argument(call, node, expr.id, unit.cls is not None)
                    if arg is not None:
                        shapes |= again(arg, site)
            else:
                return {None}
        return shapes
    return {None}


def _filter(call: ast.Call, unit: Unit) -> tuple[str, str]:
    """(field, operator) of where(filter=FieldFilter(f, op, v)) or where(f, op, v)."""
    args: list[ast.expr] = list(call.args)
    for keyword in call.keywords:
        if keyword.arg == "filter" and isinstance(keyword.value, ast.Call):
            args = list(keyword.value.args)
    if len(args) >= 2 and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args[:2]):
        return str(args[0].value), str(args[1].value)  # type: ignore[attr-defined]
    raise Unresolved(f"{unit.where(call)}: cannot read the filter of {ast.unparse(call)}")


def _directions(program: Program, call: ast.Call, unit: Unit) -> set[str]:
    expr: ast.expr | None = next((k.value for k in call.keywords if k.arg == "direction"), None)
    if expr is None:
        return {"ASCENDING"}
    todo, found = [expr], set()
    while todo:
        e = todo.pop()
        if isinstance(e, ast.Attribute) and e.attr in ("ASCENDING", "DESCENDING"):
            found.add(e.attr)
        elif isinstance(e, ast.IfExp):
            todo += [e.body, e.orelse]
        elif isinstance(e, ast.Name):
            values = [n for k, n, i in program._bindings(e.id, unit) if k == "value" and i is None]
            if not values:
                raise Unresolved(f"{unit.where(e)}: cannot tell the direction {e.id}")
            todo += [v for v in values if isinstance(v, ast.expr)]
        else:
            raise Unresolved(f"{unit.where(e)}: cannot tell the direction {ast.unparse(e)}")
    return found
