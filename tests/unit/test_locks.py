"""The two dependency locks: production's (the service's own) agrees with the development one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)((?:\s*\\\n\s*--hash=\S+)+)", re.MULTILINE)


def _pins(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Each locked project's normalised name: its version and hashes."""
    text = (ROOT / name).read_text()
    return {
        re.sub(r"[-_.]+", "-", project).lower(): (
            version,
            frozenset(re.findall(r"sha256:\w+", hashes)),
        )
        for project, version, hashes in PIN.findall(text)
    }


def test_the_production_lock_holds_the_development_locks_releases_of_the_services_own():
    runtime, development = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert runtime and set(runtime) < set(development)
    assert {name: pin for name, pin in runtime.items() if development[name] != pin} == {}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", requirement)[0]).lower()
        assert name in runtime, requirement
    assert "pytest" not in runtime and "pytest" in development
