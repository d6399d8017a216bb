"""The `relay` command: serve, worker, migrate, check-config, source-url, deliveries."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from relay import __version__
from relay.cli_common import StartupFailure, config_option, load_config, load_found
from relay.cli_deliveries import deliveries
from relay.cli_jobs import jobs
from relay.first_run import write_first_run_config
from relay.logs import LOG_FORMATS, LOG_LEVELS
from relay.providers import webhook_url
from relay.settings import (
    DEFAULT_CONFIG_PATH,
    ConfigSearch,
    Settings,
    find_config,
)
from relay.startup import StartupError, check_listen, prepare_database, probe_database
from relay.store import parse_database_url, redacted_url
from relay.tokens import Tokens

__all__ = ["main"]


@contextmanager
def _starting() -> Iterator[None]:
    """Start-up checks (relay/startup.py) whose failure is a `StartupFailure`."""
    try:
        yield
    except StartupError as exc:
        raise StartupFailure(str(exc)) from None


def _log_options(command: Any) -> Any:
    """`--log-format` and `--log-level` (over `RELAY_LOG_FORMAT`/`RELAY_LOG_LEVEL` and the config's keys)."""
    command = click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=None,
        help="Log from this level up (default info).",
    )(command)
    return click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default=None,
        help="text lines, or one JSON object per line (default text).",
    )(command)


def _write_first_run(search: ConfigSearch, host: str | None, port: int | None) -> dict[str, str]:
    try:
        return write_first_run_config(DEFAULT_CONFIG_PATH, host, port)
    except OSError as exc:
        raise StartupFailure(
            f"no config file found (looked for {search.places()}), and a new one cannot be written at"
            f" {DEFAULT_CONFIG_PATH.absolute()} ({exc.strerror or exc}): run `relay serve` in a folder you"
            " may write to, or pass --config FILE"
        ) from None


@click.group()
@click.version_option(version=__version__)
def main() -> None:
    """relay: verified provider callbacks in, durable jobs, long-poll out."""


@main.command()
@config_option
@_log_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8000).")
@click.option("--access-log/--no-access-log", default=False, help="Log every request.")
@click.option(
    "--worker/--no-worker",
    default=True,
    help="Also deliver and sweep (default); --no-worker serves HTTP only, next to `relay worker` processes.",
)
def serve(
    config: Path | None,
    host: str | None,
    port: int | None,
    access_log: bool,
    worker: bool,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """Run the relay."""
    first_run = None
    search = find_config(config)
    if search.path is None:
        first_run = _write_first_run(search, host, port)
        search = dataclasses.replace(search, path=DEFAULT_CONFIG_PATH)
    try:
        settings = load_found(search, host=host, port=port, log_format=log_format, log_level=log_level)
        if not worker:
            _check_shared(settings, "relay serve --no-worker")
        with _starting():
            check_listen(settings.host, settings.port)
            prepare_database(settings.database)
    except click.ClickException:
        if first_run is not None:  # a first start that fails leaves no config behind: the next one writes it
            DEFAULT_CONFIG_PATH.unlink(missing_ok=True)
        raise
    if first_run is not None:
        url = webhook_url(settings.base_url, settings.sources["demo"], Tokens(settings.secret_key))
        click.echo(
            f"First start: wrote {DEFAULT_CONFIG_PATH} (keep it private). Shown once:\n"
            f"  API key:              {first_run['api_key']}\n"
            f"  demo source webhook:  {url}\n"
            f"  demo source secret:   {first_run['demo_secret']}",
            err=True,
        )
    from relay.server import serve as serve_app  # after the checks: a failure needs none of the server

    serve_app(settings, worker=worker, access_log=access_log)


@main.command()
@config_option
@_log_options
def worker(config: Path | None, log_format: str | None, log_level: str | None) -> None:
    """Deliver and sweep without serving HTTP, beside `relay serve --no-worker` instances (PostgreSQL)."""
    settings = load_config(config, log_format=log_format, log_level=log_level)
    _check_shared(settings, "relay worker")
    with _starting():
        prepare_database(settings.database)
    from relay.server import run_worker  # after the checks: a failure needs none of the server

    run_worker(settings)


def _check_shared(settings: Settings, what: str) -> None:
    """Refuse to split the work across processes on a database only one process may write."""
    if parse_database_url(settings.database).scheme != "postgresql":
        raise StartupFailure(
            f"{what} splits relay across processes, which needs a database they share: set database ="
            ' "postgresql://user@host:5432/relay" (SQLite is written by one relay process; run `relay serve`)'
        )


@main.command()
@config_option
def migrate(config: Path | None) -> None:
    """Apply the database's pending schema migrations (`serve` also applies them when it starts)."""
    settings = load_config(config)
    with _starting():
        applied = prepare_database(settings.database)
    for number in applied:
        click.echo(f"applied migration {number:04d}")
    if not applied:
        click.echo("the database is up to date: nothing to apply")


@main.command("check-config")
@config_option
def check_config(config: Path | None) -> None:
    """Validate the config, check that the database can be opened, and print each source's webhook URL."""
    search = find_config(config)
    settings = load_found(search)
    with _starting():
        probe_database(settings.database)
    # Which file was read: with a search order, the one found may not be the one meant.
    click.echo(
        f"read {search.path.absolute()}" if search.path else "read no file: the environment only", err=True
    )
    tokens = Tokens(settings.secret_key)
    click.echo(f"config ok: {len(settings.sources)} source(s), database {redacted_url(settings.database)}")
    for name, source in settings.sources.items():
        click.echo(f"  {name} ({source.kind}): {webhook_url(settings.base_url, source, tokens)}")


@main.command("source-url")
@config_option
@click.argument("name")
def source_url(config: Path | None, name: str) -> None:
    """Print the webhook URL to give the provider of source NAME."""
    settings = load_config(config)
    if name not in settings.sources:
        raise click.ClickException(
            f"no source named {name!r} (have: {', '.join(settings.sources) or 'none'})"
        )
    click.echo(webhook_url(settings.base_url, settings.sources[name], Tokens(settings.secret_key)))


main.add_command(deliveries)  # relay/cli_deliveries.py
main.add_command(jobs)  # relay/cli_jobs.py: the jobs API from a shell
