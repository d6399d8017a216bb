"""Numbering: a backend's numbered migrations (`migrations/NNNN.sql` beside its package, read in order), and
the shared queries' `?` placeholders numbered for PostgreSQL."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["numbered", "numbered_sql", "schema_version"]


def _numbered_files(package: str) -> list[tuple[int, Traversable]]:
    folder = resources.files(package).joinpath("migrations")
    return sorted(
        ((int(f.name.removesuffix(".sql")), f) for f in folder.iterdir() if f.name.endswith(".sql")),
        key=lambda found: found[0],
    )


def numbered_sql(package: str) -> dict[int, str]:
    """Every migration's SQL in `package`'s `migrations` folder by the version it brings the database to."""
    return {number: f.read_text() for number, f in _numbered_files(package)}


def schema_version(package: str) -> int:
    """The newest migration's number in `package`: a database past it was written by a later relay, and is
    left alone."""
    return _numbered_files(package)[-1][0]


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (the shared queries hold no `?` of their own)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]
