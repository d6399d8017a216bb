"""deploy/relay.service: `systemd-analyze verify` and `security`, and what relay needs of the unit."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.deploy.deploy_files import DEPLOY, RELAY_DRAIN_S, relay_commands, run, serve_host, tool

UNIT = DEPLOY / "relay.service"
INSTALLED_RELAY = "/opt/relay/bin/relay"  # where deploy/README.md installs it
# systemd-analyze's 0-10 scale (10 is a unit with no hardening); "OK" ends at 4.9.
MAX_EXPOSURE = 2.0

HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "StateDirectory": "relay",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "CapabilityBoundingSet": "",
}


def directives() -> dict[str, str]:
    """The unit's `Key=value` lines (the last one where a key repeats)."""
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's relay (verify requires an executable there)."""
    relay = Path(sys.executable).parent / "relay"
    assert relay.exists(), relay
    path = tmp_path / "relay.service"
    path.write_text(UNIT.read_text().replace(INSTALLED_RELAY, str(relay)))
    return path


def test_systemd_analyze_verify_is_clean(unit_here: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single warning (an unknown key is a warning)."""
    result = run(tool("systemd-analyze"), "verify", "--man=no", "--generators=no", str(unit_here))
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stdout + result.stderr


def test_exposure_stays_low(unit_here: Path) -> None:
    """`systemd-analyze security --offline` rates the unit's exposure at most MAX_EXPOSURE."""
    result = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(unit_here))
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert level is not None, result.stdout + result.stderr
    assert float(level[1]) <= MAX_EXPOSURE, result.stdout


def test_hardening_directives() -> None:
    """The directives the single-node shape promises (a made-up user, one writable directory, IP only)."""
    found = directives()
    assert {key: found.get(key) for key in HARDENING} == HARDENING


def test_serves_sqlite_in_the_state_directory_on_loopback() -> None:
    """`relay serve` on 127.0.0.1 (a TLS proxy in front), its SQLite database in StateDirectory."""
    found = directives()
    argv = shlex.split(found["ExecStart"])
    assert argv[0] == INSTALLED_RELAY and argv[1] in relay_commands() and argv[1] == "serve"
    assert serve_host(argv) == "127.0.0.1"
    assert argv[argv.index("--config") + 1] == "%d/relay.toml"
    assert found["LoadCredential"] == "relay.toml:/etc/relay/relay.toml"
    state = f"/var/lib/{found['StateDirectory']}"
    assert found["Environment"] == f"RELAY_DATABASE_URL=sqlite:///{state}/relay.db"
    assert found["WorkingDirectory"] == state


def test_stop_timeout_outlasts_relay_drain_and_restarts_on_failure() -> None:
    """SIGTERM, then longer than relay's drain before systemd kills it; restarted when it fails."""
    found = directives()
    assert found["KillSignal"] == "SIGTERM"
    assert int(found["TimeoutStopSec"]) > RELAY_DRAIN_S
    assert found["Restart"] == "on-failure"
