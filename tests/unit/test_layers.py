"""The layers point one way (docs/design.md, "Map"): each package imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package (a path under the repository) -> the first-party modules it must never import
FORBIDDEN = {
    "mailproxy/dal": ("mailproxy.logic", "mailproxy.views", "mailproxy.services", "mailproxy.runtime", "functions"),
    "mailproxy/logic": ("mailproxy.views", "mailproxy.runtime", "functions"),
    "mailproxy/models.py": ("mailproxy.logic", "mailproxy.dal", "functions"),
    "mailproxy/headers.py": ("mailproxy.logic", "mailproxy.dal", "mailproxy.models"),
    "mailproxy": ("functions", "mailproxy_local", "stacks", "mailproxy_client", "moto"),
    "functions": ("mailproxy_local", "stacks", "mailproxy_client", "moto"),
    "client/mailproxy_client": ("mailproxy", "functions", "stacks", "mailproxy_local"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    base = ROOT / package
    files = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if any(module == banned or module.startswith(banned + ".") for banned in forbidden)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    assert (ROOT / package).exists()
    assert violations(package, FORBIDDEN[package]) == []


def test_a_wrong_way_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "store.py").write_text("import os\nfrom mailproxy.logic.delivery import BatchDelivery\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert violations("pkg", ("mailproxy.logic",)) == ["pkg/store.py imports mailproxy.logic.delivery"]
