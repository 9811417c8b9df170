"""Structured logging: one JSON object a line."""

from __future__ import annotations

import contextvars
import json
import logging
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, request

_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("log_context")


def bind(**fields: object) -> None:
    """Add fields (request id, outbox id, ...) to every log line of the current request or job."""
    _context.set({**_context.get({}), **fields})


def clear() -> None:
    """Forget the fields bound so far (at the start of a request or job)."""
    _context.set({})


_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_plain_factory = logging.getLogRecordFactory()


def _record_with_context(*args: object, **kwargs: object) -> logging.LogRecord:
    """A log record carrying the fields bound to the current request or job when it was made."""
    record = _plain_factory(*args, **kwargs)
    for key, value in _context.get({}).items():
        setattr(record, key, value)
    return record


def configure(level: str) -> None:
    """Send every log record to stderr as JSON lines, once per process."""
    logging.setLogRecordFactory(_record_with_context)
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)


def request_id() -> str:
    """The current request's id: the caller's `X-Request-ID` (printable, ≤ 64) or a new one."""
    if "request_id" not in g:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given[:64] if given and given.isprintable() else uuid.uuid4().hex
    return g.request_id


def init_app(app: Flask) -> None:
    """Give every request an id, on each of its log lines and in the `X-Request-ID` answer."""

    @app.before_request
    def _bind_request_id() -> None:
        clear()
        bind(request_id=request_id())

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response
