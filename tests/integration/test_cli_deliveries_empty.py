"""`relay deliveries list` against a running relay with nothing to list: it says so on stderr, and stdout
stays empty (text) or valid JSON (--json)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from click.testing import CliRunner, Result

from relay.cli import main as cli
from tests.conftest import LiveRelay

pytestmark = pytest.mark.sqlite_only("the CLI's output of an empty page, the same on every backend")


async def list_deliveries(relay: LiveRelay, *args: str) -> Result:
    api = ["--url", relay.base_url, "--api-key", relay.client.headers["authorization"].split()[1]]
    return await asyncio.to_thread(CliRunner().invoke, cli, ["deliveries", "list", *api, *args])


async def test_an_empty_list_says_no_deliveries(live_relay: LiveRelay) -> None:
    """No deliveries: `no deliveries` (naming the filters asked for) on stderr, nothing on stdout; with --json
    the JSON page on stdout, as ever."""
    listed = await list_deliveries(live_relay)
    assert (listed.exit_code, listed.stdout, listed.stderr) == (0, "", "no deliveries\n")
    filtered = await list_deliveries(live_relay, "--status", "dead", "--source", "demo")
    assert (filtered.exit_code, filtered.stdout) == (0, "")
    assert filtered.stderr == "no deliveries matching status=dead, source=demo\n"
    as_json = await list_deliveries(live_relay, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert orjson.loads(as_json.stdout) == {"deliveries": [], "next_cursor": None}
    assert as_json.stderr == "no deliveries\n"


async def test_the_relay_and_key_come_from_the_environment(live_relay: LiveRelay) -> None:
    """RELAY_URL and RELAY_API_KEY stand in for --url and --api-key, as for `relay jobs`."""
    env = {
        "RELAY_URL": live_relay.base_url,
        "RELAY_API_KEY": live_relay.client.headers["authorization"].split()[1],
    }
    listed = await asyncio.to_thread(CliRunner().invoke, cli, ["deliveries", "list"], env=env)
    assert (listed.exit_code, listed.stderr) == (0, "no deliveries\n"), listed.output
    env["RELAY_API_KEY"] = "rk_wrong"
    refused = await asyncio.to_thread(CliRunner().invoke, cli, ["deliveries", "list"], env=env)
    assert refused.exit_code != 0 and "401" in refused.output
