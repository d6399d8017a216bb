"""Config errors stop `relay serve` with a message naming the key; check-config and source-url output."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from relay.cli import main
from tests.conftest import DEMO_SECRET
from tests.e2e.conftest import RelayProcess, run_cli, write_config

UNSET_VAR = "RELAY_E2E_SURELY_UNSET"
DEMO = {"kind": "standard-webhooks", "secret": DEMO_SECRET}


def _would_serve(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the config was accepted and uvicorn would have started")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CliRunner for relay.cli.main with no RELAY_* variables and a uvicorn that refuses to start."""
    for var in ("RELAY_CONFIG", "RELAY_DATABASE_URL", "RELAY_SECRET_KEY", "RELAY_API_KEYS", UNSET_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("relay.server.RelayServer.run", _would_serve)
    return CliRunner()


BAD_CONFIGS = {
    "unknown kind": (
        {"sources": {"demo": {"kind": "carrier-pigeon", "secret": DEMO_SECRET}}},
        ["sources.demo.kind", "carrier-pigeon"],
    ),
    "missing secret": ({"sources": {"demo": {"kind": "standard-webhooks"}}}, ["sources.demo.secret"]),
    "bad secret": (
        {"sources": {"demo": {"kind": "standard-webhooks", "secret": "not-base64!"}}},
        ["sources.demo.secret"],
    ),
    "unknown top-level key": (
        {"colour": "blue", "sources": {"demo": DEMO}},
        ["colour", "unknown config key"],
    ),
    "unknown source key": (
        {"sources": {"demo": {**DEMO, "colour": "blue"}}},
        ["sources.demo.colour", "unknown key"],
    ),
    "unset secret_key_env": (
        {"secret_key": None, "secret_key_env": UNSET_VAR, "sources": {"demo": DEMO}},
        ["secret_key_env", UNSET_VAR],
    ),
    "unset api_keys_env": (
        {"api_keys": None, "api_keys_env": UNSET_VAR, "sources": {"demo": DEMO}},
        ["api_keys_env", UNSET_VAR],
    ),
    "unset source secret_env": (
        {"sources": {"demo": {"kind": "standard-webhooks", "secret_env": UNSET_VAR}}},
        ["sources.demo.secret_env", UNSET_VAR],
    ),
    "no secret key": ({"secret_key": None, "sources": {"demo": DEMO}}, ["secret_key: required"]),
    "wrong type": (
        {"sweep_interval_s": "often", "sources": {"demo": DEMO}},
        ["sweep_interval_s", "expected"],
    ),
    "nan interval": (
        {"sweep_interval_s": math.nan, "sources": {"demo": DEMO}},
        ["sweep_interval_s", "finite"],
    ),
    "inf source timeout": (
        {"sources": {"demo": {**DEMO, "timeout_s": math.inf}}},
        ["sources.demo.timeout_s"],
    ),
    "blank api key": ({"api_keys": [""], "sources": {"demo": DEMO}}, ["api_keys", "empty"]),
}


@pytest.mark.parametrize("command", ["serve", "check-config"])
@pytest.mark.parametrize(("config", "named"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_stops_serve_naming_the_key(
    tmp_path: Path, cli: CliRunner, config: dict[str, Any], named: list[str], command: str
) -> None:
    """`relay serve` refuses a bad config: exit 2 and a message naming the offending key; `relay
    check-config` refuses exactly what serve refuses (nan, inf and a blank API key included)."""
    path = write_config(tmp_path / "relay.toml", **config)
    result = cli.invoke(main, [command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "Error: config:" in result.output
    for fragment in named:
        assert fragment in result.output


def test_invalid_toml_stops_serve_naming_the_file(tmp_path: Path, cli: CliRunner) -> None:
    """A file that is not TOML is refused, naming the file and the line."""
    path = tmp_path / "relay.toml"
    path.write_text('secret_key = "s"\nport = = 8000\napi_keys = ["k"]\n')
    result = cli.invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert f"config file {path} is not valid TOML" in result.output and "line 2" in result.output


def test_missing_config_file_is_an_error(tmp_path: Path, cli: CliRunner) -> None:
    """A --config that names no file is an error, not a first start."""
    result = cli.invoke(main, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "nope.toml").exists()


async def test_bad_config_stops_a_real_serve(tmp_path: Path, spawn: Any) -> None:
    """As a subprocess, `relay serve` with ./relay.toml naming an unknown kind exits non-zero at once."""
    write_config(tmp_path / "relay.toml", sources={"demo": {"kind": "carrier-pigeon", "secret": DEMO_SECRET}})
    process: RelayProcess = spawn(cwd=tmp_path)
    assert await process.exited(within=20) == 2
    assert "Error: config: sources.demo.kind: unknown kind 'carrier-pigeon'" in process.stderr
    assert "Uvicorn running" not in process.stderr


async def test_unset_env_reference_stops_a_real_serve(tmp_path: Path, spawn: Any) -> None:
    """As a subprocess, a secret_env naming an unset variable stops serve with that key in the message."""
    path = write_config(
        tmp_path / "relay.toml", sources={"demo": {"kind": "standard-webhooks", "secret_env": UNSET_VAR}}
    )
    process: RelayProcess = spawn("--config", str(path))
    assert await process.exited(within=20) == 2
    assert f"sources.demo.secret_env: environment variable '{UNSET_VAR}' is not set" in process.stderr


def test_check_config_lists_sources_and_their_urls(tmp_path: Path) -> None:
    """`relay check-config` says the config is fine and prints each source's webhook URL, no secrets."""
    path = write_config(tmp_path / "relay.toml", public_url="https://relay.example.com/")
    result = run_cli("check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"config ok: 2 source(s), database sqlite:///{tmp_path / 'relay.db'}",
        "  demo (standard-webhooks): https://relay.example.com/hooks/demo",
        "  replicate (replicate): https://relay.example.com/hooks/replicate",
    ]
    assert DEMO_SECRET not in result.stdout + result.stderr


def test_check_config_reports_errors(tmp_path: Path, cli: CliRunner) -> None:
    """`relay check-config` on a bad config exits 2 naming the key."""
    path = write_config(tmp_path / "relay.toml", sources={"demo": {"kind": "standard-webhooks"}})
    result = cli.invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 2 and "sources.demo.secret" in result.output


def test_source_url_prints_the_webhook_url(tmp_path: Path, cli: CliRunner) -> None:
    """`relay source-url NAME` prints the URL alone; an unknown NAME is an error listing the sources."""
    path = write_config(tmp_path / "relay.toml", public_url="https://relay.example.com")
    result = cli.invoke(main, ["source-url", "--config", str(path), "demo"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "https://relay.example.com/hooks/demo\n"
    missing = cli.invoke(main, ["source-url", "--config", str(path), "nope"])
    assert missing.exit_code == 1
    assert "no source named 'nope' (have: demo, replicate)" in missing.output


def test_relay_config_names_the_file_for_every_command(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELAY_CONFIG is read by source-url and check-config as by serve."""
    path = write_config(tmp_path / "elsewhere" / "custom.toml", public_url="https://env.example.com")
    monkeypatch.setenv("RELAY_CONFIG", str(path))
    assert cli.invoke(main, ["source-url", "demo"]).stdout == "https://env.example.com/hooks/demo\n"
    assert cli.invoke(main, ["check-config"]).stdout.startswith("config ok: 2 source(s)")
