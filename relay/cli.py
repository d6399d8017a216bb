"""The `relay` command: serve, worker, migrate, check-config, source-url, deliveries."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from relay import __version__
from relay.cli_jobs import jobs
from relay.errors import ConfigError
from relay.first_run import write_first_run_config
from relay.logs import LOG_FORMATS, LOG_LEVELS
from relay.providers import webhook_url
from relay.settings import (
    DEFAULT_CONFIG_PATH,
    ConfigSearch,
    Settings,
    environment_overrides,
    find_config,
    load_settings,
)
from relay.startup import StartupError, check_listen, config_problem, prepare_database, probe_database
from relay.store import parse_database_url, redacted_url
from relay.tokens import Tokens

__all__ = ["main"]

_config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "TOML config file (default: $RELAY_CONFIG, else the first of ./relay.toml,"
        " $XDG_CONFIG_HOME/relay/relay.toml, /etc/relay/relay.toml)."
    ),
)


class StartupFailure(click.ClickException):
    """relay cannot start: one line on stderr naming the problem and the fix, and exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return " ".join(self.message.split())


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


def _load(config: Path | None, **overrides: Any) -> Settings:
    """The settings from the config file found (relay/config_files.py); a failure says where it looked."""
    return _load_found(find_config(config), **overrides)


def _load_found(search: ConfigSearch, **overrides: Any) -> Settings:
    try:
        return load_settings(search.path, overrides={k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise StartupFailure(config_problem(search, exc, environment_overrides())) from None


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
@_config_option
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
        settings = _load_found(search, host=host, port=port, log_format=log_format, log_level=log_level)
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
@_config_option
@_log_options
def worker(config: Path | None, log_format: str | None, log_level: str | None) -> None:
    """Deliver and sweep without serving HTTP, beside `relay serve --no-worker` instances (PostgreSQL)."""
    settings = _load(config, log_format=log_format, log_level=log_level)
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
@_config_option
def migrate(config: Path | None) -> None:
    """Apply the database's pending schema migrations (`serve` also applies them when it starts)."""
    settings = _load(config)
    with _starting():
        applied = prepare_database(settings.database)
    for number in applied:
        click.echo(f"applied migration {number:04d}")
    if not applied:
        click.echo("the database is up to date: nothing to apply")


@main.command("check-config")
@_config_option
def check_config(config: Path | None) -> None:
    """Validate the config, check that the database can be opened, and print each source's webhook URL."""
    search = find_config(config)
    settings = _load_found(search)
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
@_config_option
@click.argument("name")
def source_url(config: Path | None, name: str) -> None:
    """Print the webhook URL to give the provider of source NAME."""
    settings = _load(config)
    if name not in settings.sources:
        raise click.ClickException(
            f"no source named {name!r} (have: {', '.join(settings.sources) or 'none'})"
        )
    click.echo(webhook_url(settings.base_url, settings.sources[name], Tokens(settings.secret_key)))


# --- deliveries: these ask the running relay over HTTP, the same API a dashboard would use ---


def _relay_api(config: Path | None, url: str | None, api_key: str | None) -> httpx.Client:
    """A client for the running relay: `--url`/`--api-key`, else the config's address and first API key."""
    if url is None or api_key is None:
        settings = _load(config)
        url = url or settings.base_url
        if api_key is None:
            if not settings.api_keys:
                raise click.ClickException("no API key: pass --api-key or set api_keys in the config")
            api_key = settings.api_keys[0]
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {api_key}"}, timeout=30)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach relay at {client.base_url}: {exc}") from None
    if response.is_error:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise click.ClickException(f"{response.status_code}: {message}")
    return response.json()


def _shown(text: str) -> str:
    """`text` for a terminal line: control characters (a job ID may hold escape sequences, tabs or newlines)
    written as Python escapes, so a value can neither break the columns nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_api_options = [
    _config_option,
    click.option("--url", default=None, help="The relay's base URL (default: from the config)."),
    click.option("--api-key", default=None, help="An API key (default: the config's first)."),
]


def _with_api_options(command: Any) -> Any:
    for option in reversed(_api_options):
        command = option(command)
    return command


@main.group()
def deliveries() -> None:
    """List and resend deliveries to subscribers (asks the running relay)."""


@deliveries.command("list")
@_with_api_options
@click.option("--status", default=None, help="pending, delivering, retrying, delivered or dead.")
@click.option("--source", default=None)
@click.option("--job-id", default=None)
@click.option("--subscription", "subscription_id", default=None, help="A subscription id (sub_...).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", default=None, help="next_cursor from an earlier page.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
def deliveries_list(
    config: Path | None, url: str | None, api_key: str | None, as_json: bool, **filters: Any
) -> None:
    """Deliveries newest first: id, status, event, job, attempts, last answer, URL."""
    params = {k: v for k, v in filters.items() if v is not None}
    with _relay_api(config, url, api_key) as client:
        page = _call(client, "GET", "/v1/deliveries", params=params)
    if not page["deliveries"]:
        click.echo(_none_listed(params), err=True)  # stderr: stdout stays the rows, or valid JSON
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for d in page["deliveries"]:
        last = d["last_status_code"] or d["last_error"] or "-"
        click.echo(
            f"{d['id']}\t{d['status']}\t{d['event_type']}\t{_shown(d['source'])}/{_shown(d['job_id'])}\t"
            f"attempts={d['attempt_count']}\tlast={_shown(str(last))}\t{_shown(d['url'])}"
        )
    if page["next_cursor"]:
        click.echo(f"(more: --cursor {page['next_cursor']})", err=True)


def _none_listed(params: dict[str, Any]) -> str:
    """What an empty page says: no deliveries (matching the filters), or none after the cursor."""
    if params.get("cursor"):
        return "no more deliveries"
    filters = ", ".join(f"{k}={_shown(str(v))}" for k, v in params.items() if k != "limit")
    return f"no deliveries matching {filters}" if filters else "no deliveries"


@deliveries.command("retry")
@_with_api_options
@click.argument("ids", nargs=-1, required=True)
def deliveries_retry(config: Path | None, url: str | None, api_key: str | None, ids: tuple[str, ...]) -> None:
    """Send deliveries IDS (dlv_...) again now, with the same webhook-id and a fresh retry schedule."""
    with _relay_api(config, url, api_key) as client:
        for delivery_id in ids:
            d = _call(client, "POST", f"/v1/deliveries/{delivery_id}/retry")
            click.echo(
                f"{d['id']}\t{d['status']}\t{d['event_type']}\t{_shown(d['source'])}/{_shown(d['job_id'])}\t"
                f"{_shown(d['url'])}"
            )


main.add_command(jobs)  # relay/cli_jobs.py: the jobs API from a shell
