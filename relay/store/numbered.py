"""A backend's numbered migrations: `migrations/NNNN.sql` beside its package, read in order."""

from __future__ import annotations

from importlib import resources

__all__ = ["numbered_sql"]


def numbered_sql(package: str) -> dict[int, str]:
    """Every migration's SQL in `package`'s `migrations` folder by the version it brings the database to."""
    folder = resources.files(package).joinpath("migrations")
    found = sorted((int(f.name.removesuffix(".sql")), f) for f in folder.iterdir() if f.name.endswith(".sql"))
    return {number: f.read_text() for number, f in found}
