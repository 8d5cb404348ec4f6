"""Run import-linter's contracts (pyproject.toml, [tool.importlinter]) on backprop_lab.

The installed package maps the repository's app/, engine/, widgets/, resources/ under
backprop_lab (setuptools package-dir), which import-linter's module scanner cannot
follow: it walks the folder of backprop_lab/__init__.py. So this builds that tree
once in a temporary folder, of symbolic links to the repository's files, puts it
first on the path and runs lint-imports on it. Exit status: lint-imports' own.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_view(dest: Path) -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = dest / "backprop_lab"
    top.mkdir()
    for entry in (ROOT / mapping["backprop_lab"]).iterdir():
        (top / entry.name).symlink_to(entry)
    # the mapped sub-packages whose folder is not already inside a mapped parent's folder
    for name, folder in sorted(mapping.items()):
        parts = name.split(".")
        if len(parts) == 2 and not (top / parts[1]).exists():
            (top / parts[1]).symlink_to(ROOT / folder)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        build_view(Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")]))}
        code = ("import sys; from importlinter.cli import lint_imports_command; "
                "sys.argv = ['lint-imports', sys.argv[1], '--no-cache']; lint_imports_command()")
        return subprocess.call([sys.executable, "-c", code, str(ROOT / "pyproject.toml")], env=env, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
