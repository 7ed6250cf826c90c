"""The layers hold (import-linter's contracts in pyproject.toml), and pixme is a package.

`lint-imports` runs on the real tree, so `make test` fails on a violation;
the same contracts run on a copy with one bad import added prove that a
violation is caught. Every module of pixme must be named by a layer, so a new
module cannot slip past the contracts unclassified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# The edge: composes the layers, so it is the one part that may import them all.
EDGE = {"pixme.wiring", "pixme.web", "pixme.events"}


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    found: list[dict[str, object]] = config["contracts"]
    return found


def lint(config: Path, source_root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: grimp finds `pixme` where the import system does.
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold() -> None:
    result = lint(PYPROJECT, FUNCTIONS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("api.py", "import pixme.services.uploads", "core imports no services, adapters or edge"),
        ("limits.py", "from pixme.adapters import gcs", "core imports no services, adapters or edge"),
        ("services/cleanup.py", "import pixme.adapters.firestore", "services import no adapters or edge"),
        ("services/uploads.py", "from pixme.services import library", "services import no other service"),
        (
            "adapters/gcs.py",
            "from pixme.services.ingest import Ingest",
            "adapters import no services or edge",
        ),
    ],
)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, bad_import: str, contract: str
) -> None:
    copy = tmp_path / "src"
    shutil.copytree(FUNCTIONS / "pixme", copy / "pixme", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "pixme" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # the violation under test\n")
    config = tmp_path / "pyproject.toml"
    shutil.copy(PYPROJECT, config)
    result = lint(config, copy)
    assert result.returncode == 1, result.stdout + result.stderr
    # A core module importing a service may break the services' independence too
    # (through the chain), so only the contract named must be among the broken.
    assert f"{contract} BROKEN" in result.stdout


def test_every_module_of_pixme_is_in_a_layer() -> None:
    by_name = {c["name"]: c for c in contracts()}
    core = set(by_name["core imports no services, adapters or edge"]["source_modules"])  # type: ignore[call-overload]
    top = {f"pixme.{p.stem}" for p in (FUNCTIONS / "pixme").glob("*.py") if p.stem != "__init__"}
    packages = {f"pixme.{p.parent.name}" for p in (FUNCTIONS / "pixme").glob("*/__init__.py")}
    assert packages == {"pixme.services", "pixme.adapters"}
    assert top - EDGE == core, "a module of pixme that no contract classifies (or one that is gone)"


def test_pixme_is_imported_from_the_installed_package() -> None:
    import pixme

    dist = metadata.distribution("pixme")
    assert dist.metadata["Name"] == "pixme"
    assert Path(pixme.__file__).resolve().parent == FUNCTIONS / "pixme"
    # Its dependencies are the deployed functions' own requirements (the .in the lock is made from).
    required = {str(Requirement(r)) for r in dist.requires or []}
    listed = {
        str(Requirement(line))
        for line in (FUNCTIONS / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert required == listed, "the installed pixme is stale: make setup"
    # The build's metadata stays out of functions/, which is zipped and deployed whole.
    assert not list(FUNCTIONS.glob("*.egg-info"))


def test_a_deployed_main_imports_with_only_functions_on_the_path() -> None:
    # As Cloud Functions runs it: the zip of functions/ on sys.path and the
    # dependencies installed, without the editable install (-S: no .pth file is
    # read, so pixme can only come from functions/ itself).
    site = next(p for p in sys.path if p.endswith("site-packages"))
    child = (
        "import sys\n"
        "stdlib = [p for p in sys.path if 'site-packages' not in p]\n"
        f"sys.path[:] = [{str(FUNCTIONS)!r}, *stdlib, {site!r}]\n"
        "import main, pixme\n"
        "print(pixme.__file__, main.uploads.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", child], cwd="/", capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(FUNCTIONS / "pixme" / "__init__.py"), "main"]
