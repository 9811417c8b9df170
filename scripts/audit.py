"""Run pip-audit (same arguments) where PyPI may serve only project JSON, not per-release JSON.

pip-audit reads each locked release's known vulnerabilities from PyPI's JSON API at
`/pypi/<name>/<version>/json`. Some PyPI mirrors (the one of this project's build machines among
them) answer 404 there and serve only `/pypi/<name>/json`, whose `vulnerabilities` are those of the
project's latest release. This wrapper lets that answer stand in when, and only when, the locked
version IS the latest release; an older locked version stays unaudited, which `--strict` turns into
a failure (refresh the lock with `make lock`). Where PyPI answers per release, nothing changes.
"""

from __future__ import annotations

import re
from typing import Any

import pip_audit._cli as cli
from packaging.version import Version
from requests import PreparedRequest, Request, Response
from requests.adapters import HTTPAdapter

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
    """pip-audit's PyPI service with the latest-release fallback on its session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.mount(PYPI_JSON, LatestReleaseFallback())


if __name__ == "__main__":
    cli.PyPIService = PyPIService
    cli.audit()
