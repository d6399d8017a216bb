"""What stops relay before it serves, said as one line naming the problem and its fix: the listening
address, and the database (opened and migrated before uvicorn starts, so no failure reaches the lifespan's
traceback). Each check raises a `StartupError`; the CLI prints its message alone and exits 2."""

from __future__ import annotations

import asyncio
import errno
import getpass
import os
import socket
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relay.config_files import ConfigSearch
from relay.errors import ConfigError
from relay.store import migrate_database, parse_database_url, redacted_url

__all__ = [
    "CONNECT_TIMEOUT_S",
    "StartupError",
    "check_listen",
    "config_problem",
    "prepare_database",
    "probe_database",
]

# How long a start waits for PostgreSQL to answer before saying it does not (asyncpg's own default is 60 s).
CONNECT_TIMEOUT_S = 10.0
# A SQLite file's header (sqlite.org/fileformat.html): its magic string, and where `PRAGMA user_version` is.
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
_USER_VERSION_AT = 60


class StartupError(Exception):
    """relay cannot start: the message names the problem and the fix, on one line."""


def config_problem(search: ConfigSearch, exc: ConfigError, overrides: Sequence[str]) -> str:
    """The line for a config that cannot be used: the problem, where it came from, and the fix.
    `overrides` are the `RELAY_*` variables set, whose values may be what is wrong."""
    if search.path is None:
        alone = f"; the {', '.join(overrides)} set are not a config alone ({exc})" if overrides else ""
        return (
            f"config: no config file found (looked for {search.places()}){alone}: pass --config FILE or set"
            " RELAY_CONFIG, or run `relay serve` once to write a new ./relay.toml"
        )
    where = search.path.absolute()
    if not search.path.exists():
        return f"config: {where} (named by {search.named_by}) does not exist: fix the path"
    if str(search.path) in str(exc):
        origin = ""
    else:
        origin = f" (in {where}{' or ' + ', '.join(overrides) if overrides else ''})"
    return f"config: {exc}{origin}: fix it, then check with `relay check-config`"


def check_listen(host: str, port: int) -> None:
    """Raise unless every address `host` names can listen on `port` now (as uvicorn binds them)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {where}: {host!r} is not an address of this machine ({exc.strerror}):"
            " set host (or --host) to an address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            # As asyncio's create_server: a port left in TIME_WAIT is free, one with a listener is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise StartupError(f"cannot listen on {where}: {_bind_problem(exc, port)}") from None


def _bind_problem(exc: OSError, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is in use (another relay, or another program, listens there):"
            " stop it, or choose a free port with --port or port = in the config"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} ({exc.strerror}; ports below 1024 need privileges):"
            " choose a port above 1023 with --port or port = in the config"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{exc.strerror}: set host (or --host) to an address of this machine, such as 127.0.0.1"
    return f"{exc.strerror or exc}: check host and port in the config"


def prepare_database(url: str) -> list[int]:
    """Open the database at `url` and apply its pending migrations (what start-up does, done first so a
    failure is one line); answer the migrations applied."""
    database = parse_database_url(url)
    shown = redacted_url(url)
    if database.scheme == "postgresql":
        return asyncio.run(_on_postgres(database.path, shown, migrate=True))
    try:
        return migrate_database(url)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise StartupError(f"database {shown}: {_sqlite_problem(database.path, exc)}") from None


def probe_database(url: str) -> None:
    """Raise unless the database at `url` could be opened, changing nothing: a SQLite file's folder takes
    new files and an existing file is a database relay can use; PostgreSQL answers and lets relay in."""
    database = parse_database_url(url)
    shown = redacted_url(url)
    if database.scheme == "postgresql":
        asyncio.run(_on_postgres(database.path, shown, migrate=False))
        return
    path = Path(database.path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if path.exists():
            _check_header(path)
        with tempfile.TemporaryFile(dir=path.absolute().parent):
            pass  # WAL mode makes files beside the database: the folder must take them
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise StartupError(f"database {shown}: {_sqlite_problem(database.path, exc)}") from None


def _check_header(path: Path) -> None:
    """Read a SQLite file's header (opening the file would write beside it): a database of a schema this
    relay knows, and a file relay may write."""
    from relay.store.sqlite.migrations import SCHEMA_VERSION

    if not os.access(path, os.R_OK | os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    with path.open("rb") as f:
        header = f.read(_HEADER_BYTES)
    if header and not header.startswith(_SQLITE_MAGIC):
        raise sqlite3.DatabaseError("file is not a database")
    version = int.from_bytes(header[_USER_VERSION_AT : _USER_VERSION_AT + 4], "big") if header else 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"the database is at schema {version}, newer than this relay ({SCHEMA_VERSION})")


def _sqlite_problem(path: str, exc: BaseException) -> str:
    """What is wrong with the SQLite database at `path`, which `exc` refused, and what to do."""
    file = Path(path).absolute()
    folder = file.parent
    if not folder.exists():
        return (
            f"the folder {folder} does not exist: create it (mkdir -p {folder}),"
            " or set database to a file in an existing folder"
        )
    if not folder.is_dir():
        return f"{folder} is not a folder: set database to a file in a folder"
    if file.is_dir():
        return f"{file} is a folder: set database to a file name, such as sqlite:///{file / 'relay.db'}"
    if "newer than this relay" in str(exc):
        return f"{exc}: upgrade relay, or set database to another file"
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return f"{file} is not a SQLite database ({exc}): set database to another file"
    return (
        f"cannot open {file} ({_reason(exc)}): make the folder {folder} and the file writable by the user"
        f" relay runs as ({_user()}), or set database to a file in a writable folder"
    )


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


async def _on_postgres(dsn: str, shown: str, *, migrate: bool) -> list[int]:
    """Connect to PostgreSQL (and migrate), each failure said as one line."""
    try:
        import asyncpg

        from relay.store.postgres.migrations import migrate as apply_migrations
    except ImportError:
        raise StartupError(
            f"database {shown}: PostgreSQL needs asyncpg, which is not installed:"
            " pip install 'callback-relay[postgres]'"
        ) from None
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # asyncpg raises OSError, PostgresError, ValueError and its own, by cause
        raise StartupError(f"database {shown}: {_postgres_problem(dsn, exc)}") from None
    try:
        return await apply_migrations(conn) if migrate else []
    except RuntimeError as exc:  # a schema newer than this relay
        raise StartupError(f"database {shown}: {exc}: upgrade relay, or use another database") from None
    except asyncpg.PostgresError as exc:
        raise StartupError(
            f"database {shown}: the migration failed ({_scrubbed(exc, dsn)}): check that the user may create"
            " tables in this database (relay migrate applies the same migrations)"
        ) from None
    finally:
        await conn.close()


def _postgres_problem(dsn: str, exc: Exception) -> str:
    import asyncpg

    reason = _scrubbed(exc, dsn)
    address = _address(dsn)
    if isinstance(exc, socket.gaierror):
        return (
            f"the host in {address} is not found ({reason}): fix the host in database or RELAY_DATABASE_URL"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"PostgreSQL at {address} did not answer within {CONNECT_TIMEOUT_S:g} s:"
            " check that it runs and that a firewall lets this machine reach it"
        )
    if isinstance(exc, OSError):
        return (
            f"cannot connect to PostgreSQL at {address} ({reason}): start PostgreSQL, or fix the host and"
            " port in database (or RELAY_DATABASE_URL)"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"{reason}: create it (createdb), or fix the database name in the URL"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return (
            f"PostgreSQL refused the login ({reason}): fix the user and password in the URL,"
            " or the server's pg_hba.conf"
        )
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return f"PostgreSQL is starting or stopping ({reason}): start relay again once it is up"
    if isinstance(exc, ValueError | asyncpg.ClientConfigurationError):
        return f"the URL cannot be used ({reason}): fix database (or RELAY_DATABASE_URL)"
    return f"cannot connect ({type(exc).__name__}: {reason}): check database (or RELAY_DATABASE_URL)"


def _address(dsn: str) -> str:
    """`host:port` of a PostgreSQL URL, as far as it can be read."""
    parts = urlsplit(dsn)
    try:
        port: Any = parts.port or 5432
    except ValueError:
        port = "?"
    return f"{parts.hostname or 'localhost'}:{port}"


def _scrubbed(exc: BaseException, dsn: str) -> str:
    """`exc`'s message on one line, without the URL's password should a library have quoted it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(dsn).password
    return text.replace(password, "***") if password else text
