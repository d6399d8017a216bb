"""What the `relay` commands share: the --config option, loading the config it names, one-line failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from relay.errors import ConfigError
from relay.settings import ConfigSearch, Settings, environment_overrides, find_config, load_settings
from relay.startup import config_problem

__all__ = ["StartupFailure", "config_option", "load_config", "load_found", "shown"]

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
