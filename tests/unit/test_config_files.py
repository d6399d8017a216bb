"""The config file search (relay/config_files.py): its order, /etc/relay last, and what it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay import config_files
from relay.config_files import LOCAL_CONFIG_PATH, SYSTEM_CONFIG_PATH, config_candidates, search_config


def test_the_places_in_order() -> None:
    """./relay.toml, then the user's config folder, then /etc/relay/relay.toml."""
    assert config_candidates({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == (
        Path("relay.toml"),
        Path("/x/relay/relay.toml"),
        Path("/etc/relay/relay.toml"),
    )
    assert config_candidates({"HOME": "/h"})[1] == Path("/h/.config/relay/relay.toml")
    assert config_candidates({"HOME": "/h", "XDG_CONFIG_HOME": "relative"})[1] == Path(
        "/h/.config/relay/relay.toml"
    )


def test_the_system_config_is_found_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing in the folder or the user config folder, the system file is read; all three are listed."""
    system = tmp_path / "etc" / "relay.toml"
    monkeypatch.setattr(config_files, "SYSTEM_CONFIG_PATH", system)
    monkeypatch.chdir(tmp_path)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert search_config(None, env).path is None
    system.parent.mkdir()
    system.write_text("")
    found = search_config(None, env)
    assert found.path == system and found.named_by is None
    assert found.looked == (LOCAL_CONFIG_PATH, tmp_path / "xdg" / "relay" / "relay.toml", system)
    assert found.places().startswith(f"{tmp_path / 'relay.toml'}, ")
    assert SYSTEM_CONFIG_PATH == Path("/etc/relay/relay.toml")


def test_a_named_file_is_taken_as_named() -> None:
    """--config and RELAY_CONFIG name the file: no search, whether it exists or not."""
    assert search_config(Path("a.toml"), {"RELAY_CONFIG": "b.toml"}).named_by == "--config"
    named = search_config(None, {"RELAY_CONFIG": "b.toml"})
    assert (named.path, named.named_by, named.looked) == (Path("b.toml"), "RELAY_CONFIG", (Path("b.toml"),))
