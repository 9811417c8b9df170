"""Structured logging: one JSON object a line."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

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


#: Libraries whose DEBUG lines carry secrets (Authlib logs every token it issues): INFO at least,
#: whatever LOG_LEVEL says.
QUIET_AT_DEBUG = ("authlib",)


def configure(level: str) -> None:
    """Send every log record to stderr as JSON lines, once per process."""
    logging.setLogRecordFactory(_record_with_context)
    for name in QUIET_AT_DEBUG:
        logging.getLogger(name).setLevel(logging.INFO)
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
