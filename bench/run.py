"""`make bench`: run every benchmark in this folder, each in its own process.

The renderer's benchmark runs with the renderer's virtualenv; the others with
the main one. Each benchmark prints ratios measured side by side in one run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = {"renderer.py": ROOT / ".venv-renderer" / "bin" / "python"}


def main() -> int:
    failed = []
    for script in sorted(Path(__file__).parent.glob("*.py")):
        if script.name in ("run.py", "figures.py"):  # figures.py runs the others, three times
            continue
        python = PYTHONS.get(script.name, Path(sys.executable))
        print(f"\n=== bench/{script.name} ===", flush=True)
        if subprocess.run([str(python), str(script)], cwd=ROOT, check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
