"""The `relay` command: serve, check-config, source-url."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from relay.errors import ConfigError
from relay.providers import webhook_url
from relay.settings import DEFAULT_CONFIG_PATH, Settings, config_path, load_settings, write_first_run_config
from relay.tokens import Tokens

__all__ = ["main"]

_config_option = click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML config file (default: $RELAY_CONFIG, else ./relay.toml).",
)


def _config_file(config: Path | None) -> Path | None:
    """`--config`, else `RELAY_CONFIG`, else ./relay.toml if it exists (`serve` writes it on first start)."""
    path = config_path(config)
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    return path


def _load(config: Path | None, **overrides: Any) -> Settings:
    try:
        path = _config_file(config)
        return load_settings(path, overrides={k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


@click.group()
@click.version_option(package_name="relay")
def main() -> None:
    """relay: verified provider callbacks in, durable jobs, long-poll out."""


@main.command()
@_config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8000).")
@click.option("--access-log/--no-access-log", default=False, help="Log every request.")
def serve(config: Path | None, host: str | None, port: int | None, access_log: bool) -> None:
    """Run the relay."""
    from relay.server import serve as serve_app

    first_run = None
    path = config_path(config)
    if path is None:
        path = DEFAULT_CONFIG_PATH
        if not path.exists():
            first_run = write_first_run_config(path, host, port)
    settings = _load(path, host=host, port=port)
    if first_run is not None:
        url = webhook_url(settings.base_url, settings.sources["demo"], Tokens(settings.secret_key))
        click.echo(
            f"First start: wrote {path} (keep it private). Shown once:\n"
            f"  API key:              {first_run['api_key']}\n"
            f"  demo source webhook:  {url}\n"
            f"  demo source secret:   {first_run['demo_secret']}",
            err=True,
        )
    serve_app(settings, access_log=access_log)


@main.command("check-config")
@_config_option
def check_config(config: Path | None) -> None:
    """Validate the config and print each source's webhook URL."""
    settings = _load(config)
    tokens = Tokens(settings.secret_key)
    click.echo(f"config ok: {len(settings.sources)} source(s), database {settings.database}")
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
