"""engine/ never imports Qt; widgets/ never imports torch (STYLE.md)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(folder):
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for a in node.names:
                    yield path.name, _top(a.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path.name, _top(node.module)


def _top(module: str) -> str:
    """The top-level name of an import; our own parts count by their sub-package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "backprop_lab" and len(parts) > 1 else parts[0]


def test_engine_has_no_qt():
    bad = [(f, m) for f, m in imports("engine") if m in ("PySide6", "pyqtgraph", "PyQt5", "PyQt6", "shiboken6")]
    assert not bad


def test_widgets_have_no_torch():
    bad = [(f, m) for f, m in imports("widgets") if m == "torch"]
    assert not bad
    # nor indirectly through engine modules that use torch
    torch_modules = {"build", "probes", "trainer", "experiment", "custom", "watch", "export"}
    for path in (ROOT / "widgets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("engine", "backprop_lab.engine")):
                names = {node.module.split(".")[-1]} | {a.name for a in node.names}
                assert not names & torch_modules, (path.name, node.module)


def test_import_linter_contracts_hold():
    """The contracts of pyproject.toml ([tool.importlinter]), as `make test` runs them."""
    import os
    import subprocess
    import sys
    exe = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" in r.stdout and "0 broken" in r.stdout
