"""The hash-locked requirement files agree with the .in files they are compiled
from (`make lock`): every locked line is pinned with hashes, every top-level
requirement is locked at a version it allows, and nothing is locked as
top-level that the .in no longer asks for."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# lock -> (.in it is compiled from, compiled with --no-deps)
LOCKS = {
    "functions/requirements.txt": ("functions/requirements.in", False),
    "requirements.txt": ("requirements-dev.in", False),
    "local/renderer/requirements.txt": ("local/renderer/requirements.in", False),
    "local/renderer/requirements-nodeps.txt": ("local/renderer/requirements-nodeps.in", True),
}
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass
class Locked:
    version: str
    hashes: int
    via: set[str] = field(default_factory=set)


def _lock(path: str) -> dict[str, Locked]:
    """Parse a uv/pip-compile lock: `name==version \\` lines continued by
    `--hash=...` lines, each followed by its `# via` annotation."""
    entries: dict[str, Locked] = {}
    current: Locked | None = None
    in_via = False
    for raw in (REPO / path).read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            if text.startswith("via"):
                in_via = True
                text = text[len("via") :].strip()
            if in_via and current is not None and text:
                current.via.add(text)
            continue
        in_via = False
        if line.startswith("--hash="):
            assert current is not None, f"{path}: a hash before any requirement"
            assert _HASH.fullmatch(line.rstrip(" \\")), f"{path}: not a sha256 hash: {line}"
            current.hashes += 1
            continue
        req = Requirement(line.rstrip(" \\").split(" --hash=")[0])
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{path}: not pinned with ==: {line}"
        assert req.url is None, f"{path}: {line}"
        name = canonicalize_name(req.name)
        assert name not in entries, f"{path}: {name} locked twice"
        current = entries[name] = Locked(pins[0].version, len(_HASH.findall(line)))
    return entries


def _top_level(path: str) -> dict[str, dict[str, Requirement]]:
    """The requirements each .in names, by file: the .in itself and every file
    it includes with -r (constraint files, -c, add no requirements)."""
    files: dict[str, dict[str, Requirement]] = {}
    reqs: dict[str, Requirement] = {}
    for raw in (REPO / path).read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#") or line.startswith("-c "):
            continue
        if line.startswith("-r "):
            files.update(_top_level(line[3:].strip()))
            continue
        req = Requirement(line)
        reqs[canonicalize_name(req.name)] = req
    files[path] = reqs
    return files


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_locked_line_is_pinned_with_hashes(lock: str) -> None:
    entries = _lock(lock)
    assert entries
    unhashed = [name for name, e in entries.items() if e.hashes == 0]
    assert not unhashed, f"{lock}: no hashes for {unhashed}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_what_its_in_file_asks_for(lock: str) -> None:
    source, no_deps = LOCKS[lock]
    entries = _lock(lock)
    for included, reqs in _top_level(source).items():
        for name, req in reqs.items():
            assert name in entries, f"{lock}: {name} from {included} is not locked: run `make lock`"
            assert req.specifier.contains(entries[name].version, prereleases=True), (
                f"{lock}: {name}=={entries[name].version} does not satisfy {req} in {included}: "
                "run `make lock`"
            )
        marked = {name for name, e in entries.items() if f"-r {included}" in e.via}
        assert marked == set(reqs), f"{lock}: top-level from {included} differ: {sorted(marked ^ set(reqs))}"
    if no_deps:
        assert set(entries) == set(_top_level(source)[source])


def test_development_runs_the_versions_deployed() -> None:
    deployed = _lock("functions/requirements.txt")
    dev = _lock("requirements.txt")
    differ = {n: (e.version, dev[n].version if n in dev else None) for n, e in deployed.items()}
    assert {n: v for n, v in differ.items() if v[0] != v[1]} == {}


def _in_files() -> set[str]:
    """Every requirements*.in of the repository, outside hidden folders (.venv)."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "out"]
        rel = Path(folder).relative_to(REPO)
        found |= {str(rel / f) for f in files if f.startswith("requirements") and f.endswith(".in")}
    return found


def test_make_lock_regenerates_every_lock() -> None:
    ins = _in_files()
    assert ins == {source for source, _ in LOCKS.values()}
    makefile = (REPO / "Makefile").read_text()
    for lock, (source, no_deps) in LOCKS.items():
        assert f"{'--no-deps ' if no_deps else ''}{source} -o {lock}\n" in makefile
