"""What the `relay` commands share: the --config option, loading the config it names, one-line failures, and
the client (relay.client) that `relay jobs` and `relay deliveries` ask the running relay through."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from relay.client import Client, RelayError, WaitTimeout
from relay.errors import ConfigError
from relay.settings import ConfigSearch, Settings, environment_overrides, find_config, load_settings
from relay.startup import config_problem

__all__ = [
    "StartupFailure",
    "answering",
    "api_options",
    "config_option",
    "load_config",
    "load_found",
    "relay_client",
    "shown",
]

config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "TOML config file (default: $RELAY_CONFIG, else the first of ./relay.toml,"
        " $XDG_CONFIG_HOME/relay/relay.toml, /etc/relay/relay.toml)."
    ),
)


F = TypeVar("F", bound=Callable[..., Any])


def api_options(*, ticket: bool) -> Callable[[F], F]:
    """`--config`, `--url` [RELAY_URL], `--api-key` [RELAY_API_KEY] (and `--ticket` where a command reads one
    job): where the running relay is and how to sign in, the same for every command that asks it."""
    options = [
        config_option,
        click.option("--url", envvar="RELAY_URL", default=None, help="relay's base URL [env RELAY_URL]."),
        click.option(
            "--api-key", envvar="RELAY_API_KEY", default=None, help="An API key [env RELAY_API_KEY]."
        ),
    ]
    if ticket:
        options.append(
            click.option(
                "--ticket", default=None, help="A job's ticket instead of an API key (that job only)."
            )
        )

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


class StartupFailure(click.ClickException):
    """relay cannot start: one line on stderr naming the problem and the fix, and exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return " ".join(self.message.split())


def load_config(config: Path | None, **overrides: Any) -> Settings:
    """The settings from the config file found (relay/config_files.py); a failure says where it looked."""
    return load_found(find_config(config), **overrides)


def load_found(search: ConfigSearch, **overrides: Any) -> Settings:
    try:
        return load_settings(search.path, overrides={k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise StartupFailure(config_problem(search, exc, environment_overrides())) from None


def shown(text: str) -> str:
    """`text` for a terminal line: control characters (a job ID may hold escape sequences, tabs or newlines)
    written as Python escapes, so a value can neither break the columns nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def relay_client(
    config: Path | None,
    url: str | None,
    api_key: str | None,
    ticket: str | None = None,
    *,
    key_options: str = "--api-key",
    failure: type[click.ClickException] = click.ClickException,
) -> Client:
    """A client for the running relay: the URL and key (or ticket) given, else the config's address and first
    API key; no key anywhere raises `failure` naming `key_options`."""
    if url is None or (api_key is None and ticket is None):
        settings = load_config(config)
        url = url or settings.base_url
        if api_key is None and ticket is None:
            if not settings.api_keys:
                raise failure(f"no API key: pass {key_options} or set api_keys in the config")
            api_key = settings.api_keys[0]
    return Client(url, api_key=api_key, ticket=ticket)


@contextmanager
def answering(client: Client, failure: type[click.ClickException] = click.ClickException) -> Iterator[Client]:
    """Close the client, and turn what relay refused (or no answer) into `failure`: one line on stderr."""
    try:
        with client:
            yield client
    except WaitTimeout:  # `relay jobs wait` says this one itself, with its own exit status
        raise
    except RelayError as exc:
        raise failure(str(exc)) from None
