"""Structured logging: one JSON object a line."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType

_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("log_context")


def bind(**fields: object) -> None:
    """Add fields (request id, outbox id, ...) to every log line of the current request or job."""
    _context.set({**_context.get({}), **fields})


def clear() -> None:
    """Forget the fields bound so far (at the start of a request or job)."""
    _context.set({})


_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


#: The DETAIL line of a PostgreSQL error, which quotes the values of the row or key it is about
#: (a member's e-mail address, a webhook's secret): the statement (values hidden, `Database`) and
#: the error's first line say what failed.
_ROW_DETAIL = re.compile(r"^DETAIL:  .*$", re.MULTILINE)
_ROW_DETAIL_LEFT_OUT = "DETAIL:  (left out of the log: it quotes the row's values)"


def _without_row_values(text: str) -> str:
    """`text` with the DETAIL line of every PostgreSQL error it quotes left out, and the values
    their first lines quote (`without_quoted_values`)."""
    text = _ROW_DETAIL.sub(_ROW_DETAIL_LEFT_OUT, text) if "DETAIL:  " in text else text
    return without_quoted_values(text)


#: The first line of a PostgreSQL error as psycopg and SQLAlchemy name it
#: (`psycopg.errors.UniqueViolation: ...`, `(psycopg.errors.DataError) ...`): the name, then the
#: rest of the line.
_PG_FIRST_LINE = re.compile(r"(psycopg(?:\.errors)?\.\w+(?::|\)) )(.*)$", re.MULTILINE)
#: What such a line quotes: a name that the word before it says is one (`constraint "..."`,
#: `column "..."`), kept; else a value (`invalid input syntax for type integer: "..."`, `value
#: "..." is out of range`), whose quotes may hold quotes when it ends the line.
_QUOTED = re.compile(
    r"(?P<name>\b(?:constraint|relation|column|table|index|schema|type|function|sequence|"
    r"database|role|user|encoding|extension|operator|trigger|view|domain|collation|cursor|"
    r'statement|parameter|savepoint|tablespace|at|near) "[^"]*")'
    r'|(?P<last>: ".*"$)'
    r'|"[^"]*"'
)
VALUE_LEFT_OUT = '"…"'


def _unquoted(found: re.Match[str]) -> str:
    if found["name"]:
        return found["name"]
    return f": {VALUE_LEFT_OUT}" if found["last"] else VALUE_LEFT_OUT


def without_quoted_values(text: str) -> str:
    """`text` with the values that the first line of each PostgreSQL error in it quotes replaced
    by VALUE_LEFT_OUT (they may be a member's details or a secret); the names it quotes kept."""
    if "psycopg" not in text:
        return text
    return _PG_FIRST_LINE.sub(lambda line: line[1] + _QUOTED.sub(_unquoted, line[2]), text)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": _without_row_values(record.getMessage()),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = _without_row_values(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


_plain_factory = logging.getLogRecordFactory()


def _record_with_context(*args: object, **kwargs: object) -> logging.LogRecord:
    """A log record carrying the fields bound to the current request or job when it was made."""
    record = _plain_factory(*args, **kwargs)
    for key, value in _context.get({}).items():
        setattr(record, key, value)
    return record


class _Rewrite(logging.Filter):
    """Rewrite every match of `pattern` in a line that holds `marker` (the message is then
    formatted once, its arguments dropped)."""

    def __init__(self, marker: str, pattern: str, replacement: str) -> None:
        super().__init__()
        self.marker, self.pattern, self.replacement = marker, re.compile(pattern), replacement

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.marker in message:
            record.msg, record.args = self.pattern.sub(self.replacement, message), None
        return True


#: Takes out the terminal colour codes werkzeug's development server (`gateway run`) puts in its
#: lines, which would show as escapes in the JSON (a path's own control characters are escaped by
#: werkzeug before that, so only its colours are taken out).
_UNCOLOURED = _Rewrite("\x1b[", r"\x1b\[[0-9;]*m", "")
#: Takes the query out of every URL a line quotes: a webhook URL's query may be its receiver's
#: secret (`?token=...`), and urllib3's warnings quote the URL requested (a receiver answering
#: with a malformed header is enough).
_WITHOUT_QUERIES = _Rewrite("?", r"\?[^\s\"'()]+", "?…")

#: Libraries whose DEBUG lines carry secrets, INFO at least whatever LOG_LEVEL says: Authlib logs
#: every token it issues; urllib3 every URL it requests, query included (requests, RQ and redis
#: log none: the commands redis logs are named without their arguments).
QUIET_AT_DEBUG = ("authlib", "urllib3")
#: urllib3's loggers whose lines above DEBUG may quote a URL: `_WITHOUT_QUERIES` (a filter of a
#: logger applies to its own lines only, not to those of the loggers below it).
URL_LOGGERS = ("urllib3.connection", "urllib3.connectionpool", "urllib3.poolmanager")


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    """`sys.excepthook`: an error nothing caught, as one JSON line rather than a bare traceback
    (Ctrl-C as Python shows it)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, traceback)
        return
    logging.getLogger("gateway").critical("uncaught error", exc_info=(kind, exc, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """`threading.excepthook`: an error that ended a thread, as one JSON line."""
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    logging.getLogger("gateway").critical(
        "uncaught error in thread %s",
        args.thread.name if args.thread is not None else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure(level: str) -> None:
    """Send every log record to stderr as JSON lines, once per process; Python's warnings and
    the errors nothing caught (in any thread) too."""
    logging.setLogRecordFactory(_record_with_context)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    logging.getLogger("werkzeug").addFilter(_UNCOLOURED)  # once: the same filter is not added twice
    for name in QUIET_AT_DEBUG:
        logging.getLogger(name).setLevel(logging.INFO)
    for name in URL_LOGGERS:
        logging.getLogger(name).addFilter(_WITHOUT_QUERIES)
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
