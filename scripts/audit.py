"""Run pip-audit (same arguments) where PyPI may serve only project JSON, not per-release JSON.

pip-audit reads each locked release's known vulnerabilities from PyPI's JSON API at
`/pypi/<name>/<version>/json`. Some PyPI mirrors (the one of this project's build machines among
them) answer 404 there and serve only `/pypi/<name>/json`, whose `vulnerabilities` are those of the
project's latest release. This wrapper lets that answer stand in when, and only when, the locked
version IS the latest release; an older locked version stays unaudited, which `--strict` turns into
a failure (refresh the lock with `make lock`). Where PyPI answers per release, nothing changes.

pip-audit's "No known vulnerabilities found" says nothing of the releases it could not audit, so
the last line this script prints says how many were audited and names, loudly, those not audited
that the gateway runs on (not the development tools): audit those elsewhere (README, "Locked
dependencies"). They do not fail the audit: the index reachable from the build machines lacks the
data of many releases, which would fail every build.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from typing import Any

import pip_audit._cli as cli
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from pip_audit._service.interface import Dependency, ResolvedDependency, VulnerabilityResult
from requests import PreparedRequest, Request, Response
from requests.adapters import HTTPAdapter

PROJECT = "credential-gateway"
#: The README's section that says how to audit the packages this script could not.
README_SECTION = "Locked dependencies"

PYPI_JSON = "https://pypi.org/pypi/"
_PER_RELEASE = re.compile(r"^https://pypi\.org/pypi/([^/]+)/([^/]+)/json$")


class LatestReleaseFallback(HTTPAdapter):
    """A 404 for a release's JSON becomes the project JSON when that release is the latest."""

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        response = super().send(request, **kwargs)
        match = _PER_RELEASE.match(request.url or "")
        if response.status_code != 404 or match is None:
            return response
        name, version = match.groups()
        project = super().send(Request("GET", f"{PYPI_JSON}{name}/json").prepare(), **kwargs)
        if project.ok and Version(project.json()["info"]["version"]) == Version(version):
            return project
        return response


class PyPIService(cli.PyPIService):
    """pip-audit's PyPI service with the latest-release fallback on its session; it keeps every
    dependency it answered for, audited or not."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.mount(PYPI_JSON, LatestReleaseFallback())
        self.answered: list[Dependency] = []

    def query(self, spec: Dependency) -> tuple[Dependency, list[VulnerabilityResult]]:
        dependency, vulnerabilities = super().query(spec)
        self.answered.append(dependency)
        return dependency, vulnerabilities


def runtime_packages(project: str = PROJECT) -> set[str]:
    """The installed packages `project` runs on: its dependencies and theirs, with the extras
    they ask for, but not its own extras (the development tools)."""
    found: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            markers = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(m) for m in markers):
                continue
            key = canonicalize_name(requirement.name)
            found.add(key)
            todo.append((key, frozenset(requirement.extras)))
    return found


def summary(answered: list[Dependency], runtime: set[str]) -> str:
    """The audit's last line: how many were audited, and the run-time ones that were not."""
    skipped = [d for d in answered if not isinstance(d, ResolvedDependency)]
    audited = len(answered) - len(skipped)
    line = f"AUDITED {audited} of {len(answered)} locked packages"
    if not skipped:
        return line + "."
    at_run_time = sorted(d.canonical_name for d in skipped if d.canonical_name in runtime)
    line += f"; NOT AUDITED: {len(skipped)}"
    if at_run_time:
        line += ", of them used at run time: " + ", ".join(map(_with_version, at_run_time))
    return line + f' (audit them elsewhere: README, "{README_SECTION}")'


def _with_version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def main() -> None:
    """pip-audit with this script's service, then its summary line, whatever pip-audit decided."""
    services: list[PyPIService] = []

    def service(*args: Any, **kwargs: Any) -> PyPIService:
        services.append(PyPIService(*args, **kwargs))
        return services[-1]

    cli.PyPIService = service
    try:
        cli.audit()
    finally:
        if services:  # (another vulnerability service was asked for: its own output stands)
            sys.stdout.flush()
            answered = [d for s in services for d in s.answered]
            print(summary(answered, runtime_packages()), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
