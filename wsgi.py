"""WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from gunicorn.errors import AppImportError

from gateway.bootstrap import create_app
from gateway.platform.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:  # one line, not a traceback; gunicorn stops ("App failed to load")
    raise AppImportError(str(exc)) from None
