"""The `[archive]` config table and each source's `archive` and `archive_hosts` keys, validated."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from relay.archive.config import ArchiveConfig
from relay.archive.stores import open_blob_store
from relay.errors import ConfigError

__all__ = ["ARCHIVE_KEYS", "DEFAULT_ARCHIVE_HOSTS", "archive_config", "source_archive"]

# Whose URLs are a kind's result files when `archive_hosts` is not set; generic kinds have none.
DEFAULT_ARCHIVE_HOSTS: Mapping[str, tuple[str, ...]] = {
    "replicate": ("replicate.delivery", "*.replicate.delivery"),
    "fal": ("fal.media", "*.fal.media"),
    # DALL-E image URLs (Azure blob storage, signed, valid for an hour).
    "openai": ("oaidalleapiprodscus.blob.core.windows.net",),
}
_SECRETS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")
_NUMBERS = {
    "max_file_bytes": int,
    "file_timeout_s": float,
    "presigned_url_s": float,
    "concurrency": int,
    "host_concurrency": int,
}
ARCHIVE_KEYS = frozenset(
    {"store", "s3_endpoint_url", "s3_region", "presigned_redirect", *_NUMBERS, *_SECRETS}
    | {f"{key}_env" for key in _SECRETS}
)
# SigV4 presigned URLs last at most 7 days.
_MAX_PRESIGNED_S = 7 * 86_400.0


def _secret(table: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    var = table.get(f"{key}_env")
    if var is None:
        value = table.get(key)
    elif key in table:
        raise ConfigError(f"archive.{key}: set either {key} or {key}_env, not both")
    elif not isinstance(var, str) or var not in env:
        raise ConfigError(f"archive.{key}_env: environment variable {var!r} is not set")
    else:
        value = env[var]
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"archive.{key}: expected a string")
    return value


def archive_config(table: Any, env: Mapping[str, str]) -> ArchiveConfig | None:
    """The `[archive]` table as an ArchiveConfig; None when there is none (no source may archive then)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError("archive: expected a table [archive]")
    for key in table:
        if key not in ARCHIVE_KEYS:
            raise ConfigError(f"archive.{key}: unknown key (known: {', '.join(sorted(ARCHIVE_KEYS))})")
    store = table.get("store")
    if not isinstance(store, str) or not store:
        raise ConfigError('archive.store: required: "file:///var/lib/relay/files" or "s3://bucket/prefix"')
    for key in ("s3_endpoint_url", "s3_region"):
        if table.get(key) is not None and not isinstance(table[key], str):
            raise ConfigError(f"archive.{key}: expected a string")
    endpoint = table.get("s3_endpoint_url")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"archive.s3_endpoint_url: expected an http(s) URL, got {endpoint!r}")
    numbers: dict[str, Any] = {}
    for key, kind in _NUMBERS.items():
        if key not in table:
            continue
        value = table[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and isinstance(value, float))
        ):
            raise ConfigError(
                f"archive.{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}"
            )
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"archive.{key}: must be positive, got {value!r}")
        numbers[key] = kind(value)
    if numbers.get("presigned_url_s", 0) > _MAX_PRESIGNED_S:
        raise ConfigError(f"archive.presigned_url_s: at most {_MAX_PRESIGNED_S:g} (7 days, S3's limit)")
    redirect = table.get("presigned_redirect", False)
    if not isinstance(redirect, bool):
        raise ConfigError(f"archive.presigned_redirect: expected true or false, got {redirect!r}")
    config = ArchiveConfig(
        store,
        s3_endpoint_url=endpoint,
        s3_region=table.get("s3_region"),
        s3_access_key_id=_secret(table, "s3_access_key_id", env),
        s3_secret_access_key=_secret(table, "s3_secret_access_key", env),
        s3_session_token=_secret(table, "s3_session_token", env),
        presigned_redirect=redirect,
        **numbers,
    )
    try:  # the URL's shape only: nothing is opened or asked until the app starts
        open_blob_store(store)
    except ValueError as exc:
        raise ConfigError(f"archive.store: {exc}") from None
    return config


def source_archive(
    name: str, kind: str, table: Mapping[str, Any], archive: ArchiveConfig | None
) -> tuple[bool, tuple[str, ...]]:
    """A source's `archive` and `archive_hosts` (its kind's defaults when not set)."""
    where = f"sources.{name}."
    enabled = table.get("archive", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}archive: expected true or false, got {enabled!r}")
    hosts = table.get("archive_hosts", DEFAULT_ARCHIVE_HOSTS.get(kind, ()))
    if not isinstance(hosts, list | tuple) or not all(isinstance(h, str) and h.strip() for h in hosts):
        raise ConfigError(f"{where}archive_hosts: expected a list of host names (`*.` for any subdomain)")
    for host in hosts:
        bare = host[2:] if host.startswith("*.") else host
        if not bare or "*" in bare or "/" in bare or ":" in bare:
            raise ConfigError(
                f"{where}archive_hosts: {host!r} is not a host name or `*.` wildcard"
                " (no scheme, port or path)"
            )
    if enabled and archive is None:
        raise ConfigError(
            f'{where}archive: needs an [archive] table with store ("file:///..." or "s3://...")'
        )
    if enabled and not hosts:
        raise ConfigError(
            f"{where}archive_hosts: required for kind {kind!r}, which has no default file hosts"
        )
    return enabled, tuple(hosts)
