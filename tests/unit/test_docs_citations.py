"""The code and docs cite the project's own documents (docs/*.md), never outside ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"SPEC(\.md| ?§| \d)|(RULES|CREDLY|DESIGN)\.md|\.\./shared")
PLACES = ("gateway", "jobs", "connectors", "tests", "docs", "scripts", "bench")
SUFFIXES = {".py", ".md", ".toml", ".html", ".sh", ".lua", ".txt"}


def cited_outside() -> list[str]:
    """`path:line` of every citation of a document that is not in the repository."""
    files = [ROOT / "README.md", ROOT / "wsgi.py", ROOT / "Makefile"]
    for place in PLACES:
        files += [p for p in (ROOT / place).rglob("*") if p.suffix in SUFFIXES]
    return [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]


def test_nothing_cites_a_document_outside_the_repository():
    assert cited_outside() == []


def test_the_pattern_finds_such_citations():
    spec, rules = "SPEC", "RULES"  # split, so that this file does not cite them itself
    assert OUTSIDE.search(f"as {spec} §8 asks") and OUTSIDE.search(f"see {rules}.md")
    assert OUTSIDE.search(f"as the intake records them ({spec} 5)")
    assert not OUTSIDE.search("see docs/rules.md")
