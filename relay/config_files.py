"""Where relay finds its config file, in order: `--config`, `RELAY_CONFIG`, `./relay.toml`,
`$XDG_CONFIG_HOME/relay/relay.toml` (`~/.config/relay/relay.toml`), `/etc/relay/relay.toml`; and, when none is
there, where it looked. The environment comes in as an argument (relay/settings.py reads os.environ)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCAL_CONFIG_PATH", "SYSTEM_CONFIG_PATH", "ConfigSearch", "config_candidates", "search_config"]

# Relative to the folder relay runs in; `relay serve` writes it there on a first start.
LOCAL_CONFIG_PATH = Path("relay.toml")
SYSTEM_CONFIG_PATH = Path("/etc/relay/relay.toml")


@dataclass(frozen=True, slots=True)
class ConfigSearch:
    """The config file to read (None: none found), what named it, and every place looked, in order."""

    path: Path | None
    named_by: str | None  # "--config" or "RELAY_CONFIG"; None when found by looking (or not found)
    looked: tuple[Path, ...]

    def places(self) -> str:
        """The places looked, for a message: each as an absolute path."""
        return ", ".join(str(path.absolute()) for path in self.looked)


def config_candidates(environ: Mapping[str, str]) -> tuple[Path, ...]:
    """The places looked at when neither `--config` nor `RELAY_CONFIG` names a file, in order."""
    candidates = [LOCAL_CONFIG_PATH]
    user_config = _user_config_home(environ)
    if user_config is not None:
        candidates.append(user_config / "relay" / "relay.toml")
    candidates.append(SYSTEM_CONFIG_PATH)
    return tuple(candidates)


def _user_config_home(environ: Mapping[str, str]) -> Path | None:
    """`$XDG_CONFIG_HOME`, else `~/.config` (the XDG base directory rules: a relative value is ignored)."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    if environ.get("HOME"):
        return Path(environ["HOME"]) / ".config"
    try:
        return Path.home() / ".config"
    except RuntimeError:  # no HOME and no password entry: no user config folder
        return None


def search_config(explicit: Path | None, environ: Mapping[str, str]) -> ConfigSearch:
    """The file `--config` (`explicit`) or `RELAY_CONFIG` names (which must exist), else the first
    candidate that exists, else none, with the places looked."""
    if explicit is not None:
        return ConfigSearch(explicit, "--config", (explicit,))
    if environ.get("RELAY_CONFIG"):
        named = Path(environ["RELAY_CONFIG"])
        return ConfigSearch(named, "RELAY_CONFIG", (named,))
    looked: list[Path] = []
    for candidate in config_candidates(environ):
        looked.append(candidate)
        if candidate.exists():
            return ConfigSearch(candidate, None, tuple(looked))
    return ConfigSearch(None, None, tuple(looked))
