"""docs/rules.md defines every rule id that the code names."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.rules import ids

ROOT = Path(__file__).resolve().parents[2]
RULE_ID = re.compile(
    r"\b(?:FEE|CCP|AUDIT|RECERT|CERT|CREDENTIAL|EVENT)(?:-[A-Z][A-Z0-9]*)+(?:-\d+)?\b"
)


def defined() -> set[str]:
    """The ids that head a row of a rule table in docs/rules.md."""
    text = (ROOT / "docs" / "rules.md").read_text()
    return set(re.findall(r"^\| `([A-Z0-9-]+)` \|", text, flags=re.M))


def test_every_id_that_reasons_and_violations_name_is_defined():
    named = {value for name, value in vars(ids).items() if name.isupper()}
    assert named - defined() == set()


def test_every_id_the_code_cites_is_defined():
    files = [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")]
    files.append(ROOT / "gateway" / "rules" / "policy.toml")
    cited = {match for path in files for match in RULE_ID.findall(path.read_text())}
    assert {"FEE-LAPSED", "CCP-CYCLE"} <= cited  # the scan finds citations
    assert cited - defined() == set()
