"""A `[sources.NAME]` config table, validated into a SourceConfig (relay/settings.py reads the rest)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.archive.config import ArchiveConfig
from relay.archive_settings import source_archive
from relay.errors import ConfigError
from relay.models import MAX_TIMEOUT_S, is_seconds
from relay.providers import KINDS, SourceConfig, build_provider

__all__ = ["SOURCE_COMMON", "SOURCE_NUMBER_DEFAULTS", "from_env", "positive", "source"]

SOURCE_COMMON = {
    "kind",
    "secret",
    "secret_env",
    "timeout_s",
    "tolerance_s",
    "max_deadline_s",
    "reconcile_after_s",
    "api_token",
    "api_token_env",
    "api_base_url",
    "archive",
    "archive_hosts",
}
SOURCE_NUMBER_DEFAULTS = {"timeout_s": 900.0, "tolerance_s": 300.0, "max_deadline_s": 86_400.0}


def positive(table: dict[str, Any], key: str, where: str) -> float:
    """`key` of a source's table (or its default): seconds above 0 and at most MAX_TIMEOUT_S."""
    value: Any = table.get(key, SOURCE_NUMBER_DEFAULTS.get(key))
    if not is_seconds(value):
        raise ConfigError(
            f"{where}{key}: expected a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {value!r}"
        )
    return float(value)


def from_env(raw: dict[str, Any], key: str, env: Mapping[str, str], where: str) -> Any:
    """`key`, or the environment variable named by `key_env`."""
    var = raw.get(f"{key}_env")
    if var is None:
        return raw.get(key)
    if key in raw:
        raise ConfigError(f"{where}{key}: set either {key} or {key}_env, not both")
    if not isinstance(var, str) or var not in env:
        raise ConfigError(f"{where}{key}_env: environment variable {var!r} is not set")
    return env[var]


def source(
    name: str, table: Any, env: Mapping[str, str], archive: ArchiveConfig | None = None
) -> SourceConfig:
    """The `[sources.NAME]` table `table`, checked, with its secrets read from `env` where named there
    (`archive`: the `[archive]` table, which a source's `archive = true` needs)."""
    where = f"sources.{name}."
    if not isinstance(table, dict):
        raise ConfigError(f"sources.{name}: expected a table")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"sources.{name}: a source name may hold only letters, digits, '-', '_' and '.'")
    kind = table.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}kind: unknown kind {kind!r} (one of {', '.join(sorted(KINDS))})")
    provider_cls = KINDS[kind]
    for key in table:
        if key not in SOURCE_COMMON and key not in provider_cls.options:
            raise ConfigError(f"{where}{key}: unknown key for kind {kind!r}")
    secret = from_env(table, "secret", env, where)
    secret_list = [secret] if isinstance(secret, str) else secret or []
    if not isinstance(secret_list, list) or not all(isinstance(s, str) and s for s in secret_list):
        raise ConfigError(f"{where}secret: expected a string or a list of strings")
    numbers = {key: positive(table, key, where) for key in ("timeout_s", "tolerance_s", "max_deadline_s")}
    reconcile_after_s = positive(table, "reconcile_after_s", where) if "reconcile_after_s" in table else None
    api_token = from_env(table, "api_token", env, where)
    api_base_url = table.get("api_base_url")
    for key, value in (("api_token", api_token), ("api_base_url", api_base_url)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}{key}: expected a string")
    options = {key: table.get(key, default) for key, default in provider_cls.options.items()}
    archives, archive_hosts = source_archive(name, kind, table, archive)
    config = SourceConfig(
        name=name,
        kind=kind,
        secrets=tuple(secret_list),
        options=options,
        api_token=api_token,
        api_base_url=api_base_url,
        reconcile_after_s=reconcile_after_s,
        archive=archives,
        archive_hosts=archive_hosts,
        **numbers,
    )
    build_provider(config)  # raises a ConfigError naming the key when the kind's own checks fail
    return config
