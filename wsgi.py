"""WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from gateway.bootstrap import create_app

app = create_app()
