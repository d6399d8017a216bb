"""One frozen settings object from a TOML file plus environment overrides; the only reader of os.environ."""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from relay import signing
from relay.archive.config import ArchiveConfig
from relay.archive_settings import archive_config
from relay.backoff import DEFAULT_SCHEDULE_S
from relay.config_files import LOCAL_CONFIG_PATH, ConfigSearch, search_config
from relay.cors import check_origins
from relay.errors import ConfigError
from relay.logs import LOG_FORMATS, LOG_LEVELS
from relay.models import MAX_TIMEOUT_S, is_seconds
from relay.providers import SourceConfig, webhook_url
from relay.source_config import from_env, source
from relay.store import parse_database_url
from relay.tokens import Tokens

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigSearch",
    "Settings",
    "config_path",
    "environment_overrides",
    "find_config",
    "load_settings",
]

DEFAULT_CONFIG_PATH = LOCAL_CONFIG_PATH


@dataclass(frozen=True)
class Settings:
    """Everything relay reads from its configuration, validated once."""

    secret_key: str = field(repr=False)
    api_keys: tuple[str, ...] = field(repr=False)
    database: str = "sqlite:///relay.db"
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    signing_secret: str | None = field(default=None, repr=False)
    sweep_interval_s: float = 5.0
    max_body_bytes: int = 4 * 1024 * 1024
    allow_private_destinations: bool = False
    cors_origins: tuple[str, ...] = ()  # browser pages that may read jobs with tickets (relay/cors.py)
    metrics_require_key: bool = False  # /metrics asks for an API key like /v1
    max_waiters: int = 20_000
    # Hostile clients (relay/http_protocol.py).
    max_connections: int = 0  # per process; 0: the open-file limit less room for files and outbound sockets
    header_timeout_s: float = 10.0  # from a request's first byte (a connection's start) to its headers' end
    body_timeout_s: float = 30.0  # from the end of the headers to the end of the body
    max_header_bytes: int = 64 * 1024  # request line and headers together
    max_headers: int = 100
    max_wait_s: float = 300.0
    waiter_poll_s: float = 10.0
    retention_days: float = 30.0
    sse_heartbeat_s: float = 15.0
    reconcile_concurrency: int = 8
    reconcile_timeout_s: float = 10.0
    # Deliveries to subscribers (relay/delivery.py).
    delivery_timeout_s: float = 15.0  # a whole attempt: connect, send, status and the first response bytes
    delivery_connect_timeout_s: float = 5.0
    # A claim lapses this long after its attempt's timeout (then another instance sends it): room for the
    # attempt's record to be written and for the clocks of several instances to disagree.
    delivery_lease_margin_s: float = 30.0
    delivery_concurrency: int = 64  # attempts in flight at once, all endpoints together
    endpoint_concurrency: int = 8  # attempts in flight at once to one scheme://host:port
    delivery_poll_s: float = 1.0
    retry_schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    retry_jitter: float = 0.1
    retry_after_max_s: float = 3600.0
    circuit_failures: int = 5  # failures in a row that pause an endpoint
    circuit_open_s: float = 30.0  # the first pause; it doubles on each failed probe, up to circuit_open_max_s
    circuit_open_max_s: float = 600.0
    # Logs (relay/logs.py): `text` or `json` lines on stderr, from `log_level` up.
    log_format: str = "text"
    log_level: str = "info"
    # The dashboard at /ui (relay/ui/): on unless `ui = false`; a sign-in lasts `ui_session_max_age_s`.
    ui: bool = True
    ui_session_max_age_s: float = 12 * 3600.0
    # Out of the repr: a SourceConfig's repr shows its secrets.
    sources: Mapping[str, SourceConfig] = field(default_factory=dict, repr=False)
    # The `[archive]` table (relay/archive_settings.py); None: no source archives.
    archive: ArchiveConfig | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """Where providers reach this relay: `public_url`, or the listening address."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def webhook_url(self, source: str, tokens: Tokens) -> str:
        """The URL a provider posts `source`'s callbacks to (with a token where the kind signs nothing)."""
        return webhook_url(self.base_url, self.sources[source], tokens)


# Top-level config keys with their defaults: the fields of Settings, less the required ones' (which _validate
# checks) and `sources`, plus the older `sqlite_synchronous` (folded into `database`); `*_env` forms are
# accepted for the secret ones.
_REQUIRED_UNSET: dict[str, Any] = {"secret_key": None, "api_keys": ()}
_TOP_LEVEL: dict[str, Any] = {
    **{
        f.name: _REQUIRED_UNSET.get(f.name, f.default)
        for f in fields(Settings)
        if f.name not in ("sources", "archive")
    },
    "sqlite_synchronous": "full",
}
_SECRET_KEYS = ("secret_key", "api_keys", "signing_secret")


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file named on the command line, else by `RELAY_CONFIG`, else None."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    return Path(env["RELAY_CONFIG"]) if env.get("RELAY_CONFIG") else None


def find_config(explicit: Path | None, environ: Mapping[str, str] | None = None) -> ConfigSearch:
    """The config file to read: `--config`, `RELAY_CONFIG`, else the first found of ./relay.toml,
    $XDG_CONFIG_HOME/relay/relay.toml and /etc/relay/relay.toml (relay/config_files.py)."""
    return search_config(explicit, os.environ if environ is None else environ)


_OVERRIDES = (
    ("RELAY_DATABASE_URL", "database"),
    ("RELAY_SECRET_KEY", "secret_key"),
    ("RELAY_PUBLIC_URL", "public_url"),
    ("RELAY_LOG_FORMAT", "log_format"),
    ("RELAY_LOG_LEVEL", "log_level"),
)


def environment_overrides(environ: Mapping[str, str] | None = None) -> list[str]:
    """The `RELAY_*` variables set now that override config keys (a bad value may come from one)."""
    env = os.environ if environ is None else environ
    return [var for var in (*(v for v, _ in _OVERRIDES), "RELAY_API_KEYS") if env.get(var)]


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read `path` (or `RELAY_CONFIG`), apply environment and explicit overrides, and validate."""
    env = os.environ if environ is None else environ
    path = config_path(path, env)
    raw: dict[str, Any] = _read_toml(path) if path is not None else {}
    for var, key in _OVERRIDES:
        if env.get(var):
            raw.pop(f"{key}_env", None)
            raw[key] = env[var]
    if env.get("RELAY_API_KEYS"):
        raw.pop("api_keys_env", None)
        raw["api_keys"] = [k.strip() for k in env["RELAY_API_KEYS"].split(",") if k.strip()]
    raw.update(overrides or {})
    return _validate(raw, env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:  # a folder, or a file this user may not read
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None


def _validate(raw: dict[str, Any], env: Mapping[str, str]) -> Settings:
    allowed = set(_TOP_LEVEL) | {f"{k}_env" for k in _SECRET_KEYS} | {"sources", "archive"}
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it; the README lists every key"
            raise ConfigError(f"{key}: unknown config key ({hint})")
    values: dict[str, Any] = {}
    for key, default in _TOP_LEVEL.items():
        value = from_env(raw, key, env, "") if key in _SECRET_KEYS else raw.get(key, default)
        values[key] = default if value is None else _typed(key, value, default)
    if isinstance(values["api_keys"], str):
        values["api_keys"] = [k.strip() for k in values["api_keys"].split(",") if k.strip()]
    if not isinstance(values["api_keys"], list | tuple) or not all(
        isinstance(k, str) for k in values["api_keys"]
    ):
        raise ConfigError("api_keys: expected a list of strings")
    for key in values["api_keys"]:
        # A blank key would let a blank bearer in, and the bearer is read stripped, so spaces never match.
        if not key.strip() or key != key.strip():
            raise ConfigError("api_keys: a key may not be empty or start or end with spaces")
    values["api_keys"] = tuple(values["api_keys"])
    values["cors_origins"] = check_origins(values["cors_origins"])
    if not values["secret_key"]:
        raise ConfigError("secret_key: required (or secret_key_env, or RELAY_SECRET_KEY)")
    synchronous = values.pop("sqlite_synchronous")
    if synchronous not in ("full", "normal"):
        raise ConfigError("sqlite_synchronous: expected 'full' or 'normal'")
    values["database"] = _database_url(values["database"], synchronous)
    for key in (
        "max_body_bytes",
        "retention_days",
        "sse_heartbeat_s",
        "reconcile_concurrency",
        "reconcile_timeout_s",
        "sweep_interval_s",
        "max_wait_s",
        "waiter_poll_s",
        "max_waiters",
        "header_timeout_s",
        "body_timeout_s",
        "max_header_bytes",
        "max_headers",
        "ui_session_max_age_s",
    ):
        if values[key] <= 0:
            raise ConfigError(f"{key}: must be positive")
    if values["max_connections"] < 0:
        raise ConfigError("max_connections: must be positive, or 0 for the automatic cap")
    _check_delivery_settings(values)
    _check_log_settings(values)
    if not 0 <= values["port"] <= 65535:
        raise ConfigError("port: expected 0 to 65535")
    if values["signing_secret"]:
        try:
            signing.decode_secret(values["signing_secret"])
        except ConfigError as exc:
            raise ConfigError(f"signing_secret: {exc}") from None
    sources = raw.get("sources", {})
    if not isinstance(sources, dict):
        raise ConfigError("sources: expected tables [sources.NAME]")
    values["archive"] = archive = archive_config(raw.get("archive"), env)
    values["sources"] = {name: source(name, table, env, archive) for name, table in sources.items()}
    return Settings(**values)


def _database_url(url: str, sqlite_synchronous: str) -> str:
    """The `database` URL, checked, with the older `sqlite_synchronous` key folded into its options (the URL's
    own `?synchronous=` wins)."""
    try:
        parsed = parse_database_url(url)
    except ValueError as exc:
        raise ConfigError(f"database: {exc}") from None
    # asyncpg is an extra: say how to get it here rather than fail on an import when the store opens.
    if parsed.scheme == "postgresql" and importlib.util.find_spec("asyncpg") is None:
        raise ConfigError("database: PostgreSQL needs asyncpg: pip install 'callback-relay[postgres]'")
    if parsed.scheme == "sqlite" and sqlite_synchronous != "full" and "synchronous" not in parsed.options:
        return f"{url}{'&' if '?' in url else '?'}synchronous={sqlite_synchronous}"
    return url


def _check_log_settings(values: dict[str, Any]) -> None:
    """`log_format` one of LOG_FORMATS; `log_level` one of LOG_LEVELS, in any case."""
    if values["log_format"] not in LOG_FORMATS:
        raise ConfigError(f"log_format: expected {' or '.join(LOG_FORMATS)}, got {values['log_format']!r}")
    values["log_level"] = values["log_level"].lower()
    if values["log_level"] not in LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}, got {values['log_level']!r}")


def _check_delivery_settings(values: dict[str, Any]) -> None:
    """The delivery keys: positive numbers, a jitter fraction, and a schedule of delays."""
    positive = (
        "delivery_timeout_s delivery_connect_timeout_s delivery_lease_margin_s delivery_concurrency"
        " endpoint_concurrency"
        " delivery_poll_s retry_after_max_s circuit_failures circuit_open_s circuit_open_max_s"
    )
    for key in positive.split():
        if values[key] <= 0:
            raise ConfigError(f"{key}: must be positive")
    if not 0 <= values["retry_jitter"] < 1:
        raise ConfigError("retry_jitter: expected a fraction from 0 up to (not including) 1")
    schedule = values["retry_schedule_s"]
    if not isinstance(schedule, list | tuple) or not all(is_seconds(s, zero=True) for s in schedule):
        raise ConfigError(f"retry_schedule_s: expected a list of delays in seconds (0 to {MAX_TIMEOUT_S:g})")
    values["retry_schedule_s"] = tuple(float(s) for s in schedule)


def _typed(key: str, value: Any, default: Any) -> Any:
    """`value` checked against the type of its default (ints are taken where floats are expected)."""
    if isinstance(default, tuple):  # api_keys: a list, or a comma-separated string from the environment
        return value
    expected: type | tuple[type, ...] = str if default is None else type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise ConfigError(f"{key}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    # nan passes every `<= 0` check, and inf every upper bound.
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return value
