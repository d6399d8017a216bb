"""Where the real `relay` command finds its config, run from any folder: --config, RELAY_CONFIG, ./relay.toml,
$XDG_CONFIG_HOME/relay/relay.toml (else ~/.config/relay/relay.toml), /etc/relay/relay.toml; and where it
looked when there is none."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import clean_env, run_cli, write_config


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A folder to run in, a home and an XDG config folder, all empty."""
    folders = {name: tmp_path / name for name in ("here", "home", "xdg")}
    for folder in folders.values():
        folder.mkdir()
    return folders


def config_at(path: Path, public_url: str) -> Path:
    """A config whose webhook URLs start with `public_url`, so the output says which file was read."""
    return write_config(path, public_url=public_url)


def source_url(cwd: Path, *args: str, **env: str) -> str:
    result = run_cli("source-url", "demo", *args, cwd=cwd, env=clean_env(**env))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_no_config_anywhere_says_where_it_looked(places: dict[str, Path]) -> None:
    """Each command that needs a config, run where none is found, names every place it looked, in order."""
    env = clean_env(HOME=str(places["home"]), XDG_CONFIG_HOME=str(places["xdg"]))
    looked = (
        f"(looked for {places['here'] / 'relay.toml'}, {places['xdg'] / 'relay' / 'relay.toml'},"
        " /etc/relay/relay.toml)"
    )
    commands = (("check-config",), ("source-url", "demo"), ("migrate",), ("worker",))
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        results = list(pool.map(lambda command: run_cli(*command, cwd=places["here"], env=env), commands))
    for command, result in zip(commands, results, strict=True):
        assert result.returncode == 2, (command, result.stderr)
        (line,) = result.stderr.splitlines()
        assert f"no config file found {looked}" in line, line
        assert "--config" in line and "RELAY_CONFIG" in line
    assert list(places["here"].iterdir()) == []  # nothing written, no database made


def test_the_user_config_is_found_from_any_folder(places: dict[str, Path]) -> None:
    """$XDG_CONFIG_HOME/relay/relay.toml, else ~/.config/relay/relay.toml, serves every folder; check-config
    says which file it read."""
    xdg_config = config_at(places["xdg"] / "relay" / "relay.toml", "https://xdg.example")
    home_config = config_at(places["home"] / ".config" / "relay" / "relay.toml", "https://home.example")
    assert source_url(places["here"], HOME=str(places["home"]), XDG_CONFIG_HOME=str(places["xdg"])) == (
        "https://xdg.example/hooks/demo"
    )
    assert source_url(places["here"], HOME=str(places["home"]), XDG_CONFIG_HOME="") == (
        "https://home.example/hooks/demo"
    )
    # A relative XDG_CONFIG_HOME is ignored, as the XDG rules say.
    assert source_url(places["here"], HOME=str(places["home"]), XDG_CONFIG_HOME="xdg") == (
        "https://home.example/hooks/demo"
    )
    check = run_cli("check-config", cwd=places["here"], env=clean_env(XDG_CONFIG_HOME=str(places["xdg"])))
    assert check.returncode == 0, check.stderr
    assert check.stderr.splitlines() == [f"read {xdg_config}"]
    assert home_config.exists() and list(places["here"].iterdir()) == []


def test_the_order_of_the_places(places: dict[str, Path]) -> None:
    """--config over RELAY_CONFIG over ./relay.toml over the user config."""
    here = places["here"]
    env = {"HOME": str(places["home"]), "XDG_CONFIG_HOME": str(places["xdg"])}
    config_at(places["xdg"] / "relay" / "relay.toml", "https://xdg.example")
    config_at(here / "relay.toml", "https://local.example")
    named = config_at(places["home"] / "named.toml", "https://named.example")
    flag = config_at(places["home"] / "flag.toml", "https://flag.example")
    assert source_url(here, **env) == "https://local.example/hooks/demo"
    assert source_url(here, **env, RELAY_CONFIG=str(named)) == "https://named.example/hooks/demo"
    assert source_url(here, "--config", str(flag), **env, RELAY_CONFIG=str(named)) == (
        "https://flag.example/hooks/demo"
    )


def test_a_named_file_that_is_missing_is_not_searched_past(places: dict[str, Path]) -> None:
    """RELAY_CONFIG naming no file is an error naming it, even with ./relay.toml there."""
    config_at(places["here"] / "relay.toml", "https://local.example")
    missing = places["home"] / "missing.toml"
    result = run_cli("check-config", cwd=places["here"], env=clean_env(RELAY_CONFIG=str(missing)))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: config: {missing} (named by RELAY_CONFIG) does not exist: fix the path"
    ]
