"""What the deploy/ checks share: where the files are, the validators' binaries, what relay itself serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from starlette.routing import Route

from relay.app import _LOOP_GRACE_S
from relay.cli import main
from relay.routes import ops
from relay.server import GRACEFUL_SHUTDOWN_S
from relay.settings import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"

# SIGTERM to exit: open requests get GRACEFUL_SHUTDOWN_S, then the background loops get their grace.
RELAY_DRAIN_S = GRACEFUL_SHUTDOWN_S + _LOOP_GRACE_S
RELAY_DEFAULT_PORT = 8000


def tool(name: str) -> str:
    """The path of validator `name` (the venv's first, where the dev extra puts it); skips without it, except
    in CI, where a missing validator is a failure (it would otherwise let every check here pass unseen)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        why = f"{name} is not installed (pip install -e '.[dev]'; systemd-analyze: apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {why}")
        pytest.skip(why)
    return found


def run(*argv: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a validator to completion (bounded), capturing its output."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=None if env is None else dict(env)
    )


def load_yaml(path: Path) -> Any:
    """The single YAML document in `path` (merge keys resolved, as compose and Kubernetes read them)."""
    return yaml.safe_load(path.read_text())


def relay_commands() -> set[str]:
    """The subcommands `relay --help` lists."""
    assert isinstance(main, click.Group)
    return set(main.commands)


def served_get_paths() -> set[str]:
    """Operations paths relay answers GET on without an API key (what a probe may ask)."""
    return {r.path for r in ops.routes if isinstance(r, Route) and r.methods and "GET" in r.methods}


def serve_port(argv: list[str]) -> int:
    """The port `relay serve ARGV` listens on: `--port`, else relay's default."""
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    return RELAY_DEFAULT_PORT


def serve_host(argv: list[str]) -> str:
    """The address `relay serve ARGV` listens on: `--host`, else relay's default."""
    if "--host" in argv:
        return argv[argv.index("--host") + 1]
    return Settings.host


def settings_from(config_text: str, environ: Mapping[str, str], tmp_path: Path) -> Settings:
    """relay's own settings for a config file's text and an environment: raises ConfigError where relay
    would refuse to start."""
    tomllib.loads(config_text)  # a TOML error names the line, before relay's message does
    path = tmp_path / "relay-under-test.toml"
    path.write_text(config_text)
    return load_settings(path, environ=dict(environ))


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
