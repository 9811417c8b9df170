"""The tests' own layout: helpers live in tests/support/, fixtures in conftest."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imports_from_tests() -> list[tuple[str, str, str]]:
    """(file, module, name) of every `from tests... import name` in the test suite."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests"):
                rel = str(path.relative_to(TESTS.parent))
                found.extend((rel, node.module, alias.name) for alias in node.names)
    return found


def test_tests_import_helpers_only_from_tests_support():
    elsewhere = [i for i in imports_from_tests() if not i[1].startswith("tests.support")]
    assert elsewhere == []


def test_no_test_imports_a_private_name():
    private = [i for i in imports_from_tests() if i[2].startswith("_")]
    assert private == []


def test_the_scan_sees_the_suites_imports():
    assert ("tests/conftest.py", "tests.support.database", "truncate") in imports_from_tests()
