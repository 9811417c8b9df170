"""Who vouches: the certifying body named in every verification answer, receipt and credential.

Built from the ISSUER_* settings and the gateway's public address once per process (per base URL
when PUBLIC_BASE_URL is unset and the request's own host stands in for it).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from gateway.platform.config import Settings

#: The logo types the gateway serves (a browser shows them; nothing else from the folder).
LOGO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
LOGO_PATH = "/verify/logo"


def issuer(settings: Settings, base: str) -> dict[str, Any]:
    """The `issuer` object: `name`, `url`, `contact` and `logo` (a URL; None when unset).

    `base`: the gateway's public address. One dict per base URL, shared: never change it.
    """
    return _build(
        settings.issuer_name,
        settings.issuer_url,
        settings.issuer_contact,
        _has_logo(settings.issuer_logo, settings.instance_path),
        base,
    )


@functools.lru_cache(maxsize=8)
def _has_logo(name: str | None, instance_path: str | None) -> bool:
    """Whether ISSUER_LOGO names a logo `/verify/logo` serves, as the app found it at start (it
    warned then when not): an answer never links to a logo that is not there."""
    if not name or instance_path is None:
        return False
    return logo_file(name, instance_path) is not None


@functools.lru_cache(maxsize=64)
def _build(
    name: str, url: str | None, contact: str | None, has_logo: bool, base: str
) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "contact": contact,
        "logo": f"{base}{LOGO_PATH}" if has_logo else None,
    }


def logo_file(name: str | None, instance_path: str) -> tuple[Path, str] | None:
    """The ISSUER_LOGO file `name` and its content type; None when unset, missing or not an
    image.

    Only a plain file name directly in the instance folder counts, never a path out of it.
    """
    if not name or Path(name).name != name or name.startswith("."):
        return None
    content_type = LOGO_TYPES.get(Path(name).suffix.lower())
    path = Path(instance_path) / name
    if content_type is None or not path.is_file():
        return None
    return path, content_type
