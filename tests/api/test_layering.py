"""The routes stay HTTP only: no module under `backend/api/` reaches into `backend/storage/`; they go
through the services, and the errors and types they name come from the domain packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

API_DIR = Path(__file__).resolve().parents[2] / "backend" / "api"
FORBIDDEN = "backend.storage"


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, absolute: `from x import y` counts as both `x` and `x.y`."""
    package = "backend.api"
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against backend.api
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return found


def _storage_imports(modules: list[str]) -> list[str]:
    return [name for name in modules if name == FORBIDDEN or name.startswith(FORBIDDEN + ".")]


def test_the_scan_sees_every_way_of_spelling_a_storage_import(tmp_path: Path) -> None:
    spellings = {
        "import backend.storage.json_store": True,
        "from backend.storage.layout import DataLayout": True,
        "from backend import storage": True,
        "from ..storage import json_store": True,
        "def later():\n    from backend.storage import user_folders": True,
        "from backend.service_errors import StoreBusy": False,
        "from backend.storagebox import thing": False,
    }
    for number, (source, forbidden) in enumerate(spellings.items()):
        module = tmp_path / f"m{number}.py"
        module.write_text(source + "\n", encoding="utf-8")
        assert bool(_storage_imports(imported_modules(module))) is forbidden, source


@pytest.mark.parametrize("module", sorted(API_DIR.rglob("*.py")), ids=lambda path: path.name)
def test_no_api_module_imports_storage(module: Path) -> None:
    assert _storage_imports(imported_modules(module)) == []


def test_the_api_package_is_where_the_scan_looks() -> None:
    names = {path.name for path in API_DIR.rglob("*.py")}
    assert {"errors.py", "auth_router.py", "sessions_router.py", "deps.py"} <= names
