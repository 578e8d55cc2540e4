"""The server's log lines: logfmt (the default) or one JSON object per line (``server.log_format``).

Every line has ``time``, ``level``, ``source`` and ``msg``; structured lines (a request, a kernel
event) add their fields, passed as ``log.info(msg, extra={"fields": {...}})``. Values are escaped
as they are written, so nothing a client sends (a path, a header, a model name inside a message)
can split a line or forge one: in logfmt any value that is not a plain word is quoted with JSON's
escapes plus those for Unicode line breaks and invisible controls; a traceback becomes an ``error``
field on its own line rather than lines of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

import attrs

from corral import Event, RequestFinished, TransferProgress

_BARE = re.compile(r"[A-Za-z0-9_.,:/@+\-]+")
# beyond what JSON escapes: C1 controls (NEL among them), Unicode line and paragraph separators,
# zero-width and bidirectional controls that make a line read differently from what it holds, and
# lone surrogates (from a JSON body's "\ud800"), which no encoder would write
_INVISIBLE = re.compile("[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")

events_log = logging.getLogger("corral.events")


def _escape_invisible(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


def logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    text = value if isinstance(value, str) else str(value)
    if _BARE.fullmatch(text):
        return text
    return _INVISIBLE.sub(_escape_invisible, json.dumps(text, ensure_ascii=False))


def _fields(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any]:
    moment = dt.datetime.fromtimestamp(record.created).astimezone()
    fields: dict[str, Any] = {
        "time": moment.isoformat(timespec="milliseconds"), "level": record.levelname,
        "source": record.name, "msg": record.getMessage(), **getattr(record, "fields", {}),
    }
    if record.exc_info:
        fields["error"] = formatter.formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs on one line; fields that are None are left out."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in _fields(self, record).items()
                        if value is not None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, ASCII only (every other character escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(self, record), default=str)


def configure_logging(debug: int, log_format: str = "logfmt") -> None:
    """Send every log record to stderr in ``log_format``; OLLAMA_DEBUG lowers the level to DEBUG."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    # Over HTTP/2 these print every request header at debug level, the Authorization header too.
    logging.getLogger("hpack").setLevel(logging.WARNING)
    logging.getLogger("h2").setLevel(logging.WARNING)


def log_event(event: Event) -> None:
    """A kernel event as a log line with its fields. Transfer progress (a few a second) only with
    OLLAMA_DEBUG; RequestFinished is the request log's own line, which says more."""
    if isinstance(event, RequestFinished):
        return
    level = logging.DEBUG if isinstance(event, TransferProgress) else logging.INFO
    if events_log.isEnabledFor(level):
        fields = {name: value for name, value in attrs.asdict(event).items() if name != "at"}
        events_log.log(level, event.kind, extra={"fields": fields})
