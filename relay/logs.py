"""relay's log lines: one handler on stderr, text or JSON, for relay's records and uvicorn's alike.

`log_event(log, level, "callback.rejected", source=..., reason=...)` writes one structured line: the record's
message is the event's name and its fields ride on the record (`fields_of(record)`). Every string written
goes through a `Redactor` first, so a secret that found its way into a message, a path or an exception is
written as `***`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from relay import __version__
from relay.models import iso

if TYPE_CHECKING:
    from relay.settings import Settings

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "Redactor",
    "TextFormatter",
    "configure_logging",
    "fields_of",
    "log_event",
    "log_started",
]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_FIELDS = "relay_fields"  # the LogRecord attribute holding an event's fields
_HIDDEN = "***"
# Shorter configured values are not scrubbed by value (a one-letter secret would blank every such letter);
# the patterns below still catch them where they stand in a URL, a header or a `whsec_` secret.
_MIN_SCRUBBED = 8
# Other libraries' debug lines may carry queries with their values (aiosqlite's do): they stop at info.
_OTHERS_FLOOR = logging.INFO
# httpx logs each request (with its URL) at info: reconcile calls are relay's to report, not httpx's.
_QUIET = ("httpx", "httpcore")

# Credentials by where they stand: anything in a URL but its scheme, host and path (a password, a query
# that may hold a token), a ticket or token in a bare path's query (uvicorn's access line), a hook URL's
# token, a bearer key, and a Standard Webhooks secret.
_URL = re.compile(r"(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+)")
_CREDENTIALS = re.compile(
    "|".join(
        (
            r"(?P<keep_query>[?&](?:ticket|token|api_key|key|secret|signature|password|sig)=)[^&\s'\"]+",
            r"(?P<keep_hook>/hooks/[^/\s?'\"]+/)[^/\s?#'\"]+",
            r"(?P<keep_bearer>\b[Bb]earer\s+)[^\s'\"]+",
            r"(?P<keep_whsec>whsec_)[A-Za-z0-9+/=_-]+",
        )
    )
)


def log_event(
    logger: logging.Logger, level: int, event: str, /, *, exc_info: bool = False, **fields: Any
) -> None:
    """One line for `event` (a dotted name such as `delivery.dead`) with the ids an operator filters on."""
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={_FIELDS: fields}, stacklevel=2)


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The fields `log_event` gave a record (none for a plain `log.info("...")`)."""
    fields: Mapping[str, Any] = getattr(record, _FIELDS, None) or {}
    return fields


class Redactor:
    """Replaces credentials in text: configured secrets by value, and any credential by where it stands."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= _MIN_SCRUBBED}, key=len, reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in values)) if values else None

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        """A redactor for every secret `settings` holds: keys, source secrets and tokens, the database's
        password."""
        secrets = [settings.secret_key, *settings.api_keys]
        if settings.signing_secret:
            secrets.append(settings.signing_secret)
        for source in settings.sources.values():
            secrets.extend(source.secrets)
            if source.api_token:
                secrets.append(source.api_token)
        password = _database_password(settings.database)
        if password:
            secrets.append(password)
        return cls(secrets)

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(_HIDDEN, text)
        return _CREDENTIALS.sub(_hide, _URL.sub(_bare_url, text))


def _bare_url(match: re.Match[str]) -> str:
    """A URL without its password and with its query hidden (either may hold a credential)."""
    scheme, sep, rest = match.group("url").partition("://")
    rest, question, _ = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{_HIDDEN}@{host}"
    return f"{scheme}{sep}{authority}{slash}{path}{question and question + _HIDDEN}"


def _database_password(url: str) -> str | None:
    userinfo, at, _ = url.partition("://")[2].partition("?")[0].rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    return password or None


def _hide(match: re.Match[str]) -> str:
    kept = next((value for value in match.groupdict().values() if value is not None), "")
    return kept + _HIDDEN


class _Formatter(logging.Formatter):
    """A record's parts, every string redacted: time, level, event, then its fields."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def parts(self, record: logging.LogRecord) -> dict[str, Any]:
        event, fields = _event_of(record)
        parts: dict[str, Any] = {
            "time": iso(record.created),
            "level": record.levelname.lower(),
            "event": self._redact(event),
        }
        for key, value in fields.items():
            parts[key] = self._redact(value) if isinstance(value, str) else value
        if not fields_of(record):  # not one of relay's events: whose line it is says what it is about
            parts["logger"] = record.name
        if record.exc_info:
            parts["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.stack_info:
            parts["stack"] = self._redact(record.stack_info)
        return parts


class JsonFormatter(_Formatter):
    """One JSON object per line: `time` (RFC 3339 UTC), `level`, `event`, the fields, `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(self.parts(record), default=str).decode()


class TextFormatter(_Formatter):
    """`TIME LEVEL event key=value ...` for a terminal; a value that could break the line is quoted."""

    def format(self, record: logging.LogRecord) -> str:
        parts = self.parts(record)
        exception = parts.pop("exception", None)
        event = parts.pop("event")
        if _CONTROL.search(event):  # a newline from a request must not start a line of its own
            event = _text_value_quoted(event)
        head = f"{parts.pop('time')} {parts.pop('level').upper():<8} {event}"
        line = " ".join([head, *(f"{key}={_text_value(value)}" for key, value in parts.items())])
        return line if exception is None else f"{line}\n{exception}"


_PLAIN = re.compile(r"[!#-\[\]-~]+")  # printable ASCII but space, quote and backslash
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text_value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return _text_value_quoted(value)


def _text_value_quoted(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()  # quoted and escaped: no newline gets through


def _event_of(record: logging.LogRecord) -> tuple[str, Mapping[str, Any]]:
    """The event's name and fields: `log_event`'s, uvicorn's access line taken apart, else the message."""
    fields = fields_of(record)
    if fields:
        return str(record.msg), fields
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, http_version, status_code = record.args
        return "http.request", {
            "client": client,
            "method": method,
            "path": path,
            "http_version": http_version,
            "status_code": status_code,
        }
    return record.getMessage(), {}


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every record (relay's, uvicorn's, Python warnings) to one handler on `stream` (stderr), in
    `settings.log_format` at `settings.log_level`; answer the handler."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    redactor = Redactor.for_settings(settings)
    handler.setFormatter(
        JsonFormatter(redactor) if settings.log_format == "json" else TextFormatter(redactor)
    )
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, _OTHERS_FLOOR))
    logging.getLogger("relay").setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()  # uvicorn's own, if an earlier config installed them
        uvicorn_logger.propagate = True
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)
    return handler


_log = logging.getLogger("relay")


def log_started(settings: Settings, *, listen: str | None, worker: bool) -> None:
    """`relay.started`: the version, the database (its kind, and its URL without the password), the
    sources by kind, where HTTP listens (None: no HTTP), and whether this process delivers and sweeps."""
    from relay.store import parse_database_url, redacted_url  # relay.store imports the loops, which log

    database = parse_database_url(settings.database)
    log_event(
        _log,
        logging.INFO,
        "relay.started",
        version=__version__,
        database_kind=database.scheme,
        database_url=redacted_url(settings.database.partition("?")[0]),
        database_options=dict(database.options),
        sources={name: source.kind for name, source in settings.sources.items()},
        listen=listen,
        worker=worker,
    )
