"""Each module says what it is for, and docs/architecture.md names every one of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "jobs", "connectors")


def modules() -> list[Path]:
    """Every module of the product's packages but the Alembic revisions."""
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "versions" not in path.parts
    )


def test_every_module_says_what_it_is_for():
    silent = [
        str(path.relative_to(ROOT))
        for path in modules()
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert silent == []


ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: A file or folder name in code spans, whole (`x.py`) or at the end of a path (`a/x.py`).
NAMED = re.compile(r"`(?:[\w.]+/)*([\w.]+\.py|\w+/)`")
#: A module named in code spans with the path it is given.
MODULE_PATH = re.compile(r"`((?:[\w.]+/)*[\w.]+\.py)`")


def test_the_architecture_names_every_module_and_table():
    """A module by its file name (a package by its folder); a table by its name."""
    text = ARCHITECTURE.read_text()
    named = set(NAMED.findall(text))
    modules_named = {
        f"{path.parent.name}/" if path.name == "__init__.py" else path.name
        for path in modules()
        if path.parent.name != "migrations"
    }
    models = ast.parse((ROOT / "gateway" / "store" / "models.py").read_text())
    tables = {
        node.value.value
        for node in ast.walk(models)
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == ["__tablename__"]
        and isinstance(node.value, ast.Constant)
    }
    assert sorted(modules_named - named) == []
    assert sorted(table for table in tables if f"`{table}`" not in text) == []


def test_every_module_the_architecture_names_exists():
    """A name is a path from the root or from a folder of the product (`cli/main.py`); only a
    name from the root (`tests/...`) may be a test's."""
    product = [str(path.relative_to(ROOT)) for path in modules()] + ["wsgi.py"]
    missing = [
        name
        for name in set(MODULE_PATH.findall(ARCHITECTURE.read_text()))
        if not (ROOT / name).exists()
        and not any(path.endswith(f"/{name}") or path == name for path in product)
    ]
    assert sorted(missing) == []
