"""Ray's private modules are imported in one place only (serving_app/ray_compat.py), so a Ray upgrade has one
file to read. import-linter (`make lint`) holds the rest of the layering; it sees external packages whole, so
this rule, about private submodules of one, is read from the source here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (REPO / "operator" / "modelfleet", REPO / "serving_app", REPO / "modelfleet_contract")
COMPAT = REPO / "serving_app" / "ray_compat.py"
PRIVATE = re.compile(r"^ray(\.[\w.]*)?\.(_internal|_private|_common|_raylet)\b")


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if PRIVATE.match(name)]
    return found


def test_only_the_compatibility_module_imports_rays_private_modules() -> None:
    offenders = [
        hit
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
        if path != COMPAT
        for hit in _private_imports(path)
    ]
    assert offenders == [], "import these through serving_app/ray_compat.py:\n" + "\n".join(offenders)
    assert _private_imports(COMPAT), "ray_compat.py imports nothing private: the pattern above is stale"
