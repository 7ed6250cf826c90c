"""Rewrite the parts of README.md that are derived from the code.

    python -m local.docs          # rewrite them in place (`make docs`)
    python -m local.docs --check  # exit 1 if README.md has drifted

Today that is the settings table, between its two markers, made by
`pixme.config.settings_table` from the settings' declarations, and
openapi.json, made by `pixme.openapi` from the request and response models.
"""

from __future__ import annotations

import argparse
import sys

from .procs import REPO_ROOT

BEGIN = "<!-- settings table: generated from functions/pixme/config.py by `make docs` -->"
END = "<!-- end of settings table -->"


def rendered(readme: str) -> str:
    sys.path.insert(0, str(REPO_ROOT / "functions"))
    from pixme.config import settings_table

    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} … {END!r}")
    return f"{head}{BEGIN}\n{settings_table()}{END}{tail}"


def spec() -> str:
    sys.path.insert(0, str(REPO_ROOT / "functions"))
    from pixme.openapi import rendered as openapi

    return openapi()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md differs, change nothing")
    args = parser.parse_args()
    readme, spec_path = REPO_ROOT / "README.md", REPO_ROOT / "openapi.json"
    targets = [(readme, rendered(readme.read_text())), (spec_path, spec())]
    stale = [path for path, wanted in targets if not path.exists() or path.read_text() != wanted]
    if args.check:
        for path in stale:
            print(f"{path.name} is out of date: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path, wanted in targets:
        if path in stale:
            path.write_text(wanted)
            print(f"{path.name} rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
