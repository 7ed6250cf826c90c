"""The architecture's boundaries, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
ALLOWED = {"pixme/wiring.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_adapters_and_wiring_import_google() -> None:
    offenders = []
    for path in FUNCTIONS.rglob("*.py"):
        rel = path.relative_to(FUNCTIONS).as_posix()
        if rel.startswith("pixme/adapters/") or rel in ALLOWED:
            continue
        if any(name == "google" or name.startswith("google.") for name in _imports(path)):
            offenders.append(rel)
    assert offenders == []


def test_heavy_clients_are_not_imported_at_module_level_by_entry_points() -> None:
    # main.py is imported at every cold start: it must not pull in genai or the clients.
    tree = ast.parse((FUNCTIONS / "main.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)} | {
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in top if m and m.startswith(("google", "pixme.adapters", "pixme.services"))}


def test_the_deployed_requirements_carry_no_renderer_or_test_dependencies() -> None:
    reqs = (FUNCTIONS / "requirements.txt").read_text().lower()
    for banned in ("mediapipe", "opencv", "numpy", "pytest", "fake-gcs"):
        assert banned not in reqs
