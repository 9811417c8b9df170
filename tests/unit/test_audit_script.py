"""scripts/audit.py: pip-audit reads PyPI's project JSON only for the latest release."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import pytest
import requests
import responses
from packaging.version import Version
from pip_audit._service.interface import ResolvedDependency, SkippedDependency

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"
VULN = {
    "id": "PYSEC-2099-1",
    "aliases": ["CVE-2099-1"],
    "details": "bad",
    "fixed_in": ["2.0.1"],
    "withdrawn": None,
}


@pytest.fixture(scope="module")
def audit():
    spec = importlib.util.spec_from_file_location("audit_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _audit_on_project_json_mirror(audit, tmp_path, locked: str) -> tuple:
    """Query `pkg==locked` where PyPI serves no per-release JSON and 2.0 is the latest release."""
    responses.get(f"https://pypi.org/pypi/pkg/{locked}/json", status=404)
    project = {"info": {"version": "2.0"}, "releases": {}, "vulnerabilities": [VULN]}
    responses.get("https://pypi.org/pypi/pkg/json", json=project)
    service = audit.PyPIService(cache_dir=tmp_path)
    return service.query(ResolvedDependency("pkg", Version(locked)))


@responses.activate
def test_the_latest_release_is_audited_from_the_project_json(audit, tmp_path):
    dep, vulns = _audit_on_project_json_mirror(audit, tmp_path, "2.0")
    assert dep.name == "pkg" and [v.id for v in vulns] == ["PYSEC-2099-1"]


@responses.activate
def test_an_older_release_stays_unaudited(audit, tmp_path):
    dep, vulns = _audit_on_project_json_mirror(audit, tmp_path, "1.0")
    assert isinstance(dep, SkippedDependency) and vulns == []


@responses.activate
def test_a_per_release_answer_is_used_as_it_is(audit):
    responses.get("https://pypi.org/pypi/pkg/1.0/json", json={"vulnerabilities": []})
    session = requests.Session()
    session.mount(audit.PYPI_JSON, audit.LatestReleaseFallback())
    assert session.get("https://pypi.org/pypi/pkg/1.0/json").json() == {"vulnerabilities": []}
    assert len(responses.calls) == 1  # the project JSON was not asked for


def test_the_packages_the_gateway_runs_on_exclude_the_development_tools(audit):
    runtime = audit.runtime_packages()
    assert {"flask", "redis", "rq", "sqlalchemy", "psycopg", "psycopg-binary"} <= runtime
    assert {"click", "werkzeug", "charset-normalizer"} <= runtime  # their dependencies too
    assert not {"pytest", "hypothesis", "pip-audit", "ruff", "credential-gateway"} & runtime


def test_the_last_line_counts_the_audited_and_names_the_unaudited_run_time_packages(audit):
    answered = [
        ResolvedDependency("flask", Version("3.1.0")),
        SkippedDependency("redis", "Dependency not found on PyPI"),
        SkippedDependency("rq", "Dependency not found on PyPI"),
        SkippedDependency("hypothesis", "Dependency not found on PyPI"),
    ]
    line = audit.summary(answered, {"flask", "redis", "rq"})
    redis, rq = (f"{name} {metadata.version(name)}" for name in ("redis", "rq"))
    assert line == (
        f"AUDITED 1 of 4 locked packages; NOT AUDITED: 3, of them used at run time: {redis}, {rq}"
        ' (audit them elsewhere: README, "Locked dependencies")'
    )
    assert audit.summary(answered[:1], {"flask"}) == "AUDITED 1 of 1 locked packages."


def test_the_readme_has_the_section_the_last_line_sends_the_reader_to(audit):
    readme = (SCRIPT.parents[1] / "README.md").read_text().splitlines()
    assert f"### {audit.README_SECTION}" in readme


@responses.activate
def test_the_service_keeps_what_it_could_not_audit(audit, tmp_path):
    responses.get("https://pypi.org/pypi/pkg/1.0/json", status=404)
    responses.get("https://pypi.org/pypi/pkg/json", json={"info": {"version": "2.0"}})
    service = audit.PyPIService(cache_dir=tmp_path)
    service.query(ResolvedDependency("pkg", Version("1.0")))
    [kept] = service.answered
    assert isinstance(kept, SkippedDependency) and kept.name == "pkg"
