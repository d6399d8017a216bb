"""First start with no config: relay writes one, shows its keys once, and reuses them afterwards."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.conftest import signed_headers
from tests.e2e.conftest import RelayProcess, run_cli

_SHOWN = re.compile(
    r"API key:\s+(?P<api_key>\S+)\n"
    r"\s+demo source webhook:\s+(?P<url>\S+)\n"
    r"\s+demo source secret:\s+(?P<secret>\S+)"
)


async def _post_signed(url: str, secret: str, job_id: str) -> httpx.Response:
    body = orjson.dumps({"id": job_id, "status": "succeeded", "output": ["https://cdn.example.com/a.png"]})
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, content=body, headers=signed_headers(secret, body))


async def test_first_start_writes_config_and_shows_keys_once(tmp_path: Path, spawn: Any) -> None:
    """An empty directory: relay.toml (0600) is written, the keys shown once work, a restart reuses them."""
    home = tmp_path / "fresh"
    home.mkdir()
    first: RelayProcess = spawn(cwd=home)
    await first.ready()
    config = home / "relay.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert (home / "relay.db").exists()
    shown = _SHOWN.search(first.stderr)
    assert shown is not None, first.stderr
    api_key, url, secret = shown["api_key"], shown["url"], shown["secret"]
    assert url == f"{first.base_url}/hooks/demo"
    assert secret.startswith("whsec_")
    output = first.stdout + first.stderr
    assert output.count(api_key) == 1 and output.count(secret) == 1

    accepted = await _post_signed(url, secret, "first-run-job")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {
        "accepted": True,
        "source": "demo",
        "job_id": "first-run-job",
        "duplicate": False,
    }
    async with first.client(api_key) as client:
        assert (await client.get("/v1/jobs/demo/first-run-job")).json()["status"] == "succeeded"

    written = config.read_text()
    await first.stop()

    second: RelayProcess = spawn(cwd=home)
    await second.ready()
    assert config.read_text() == written
    later_output = second.stdout + second.stderr
    assert "First start" not in later_output
    assert api_key not in later_output and secret not in later_output
    async with second.client(api_key) as client:
        job = (await client.get("/v1/jobs/demo/first-run-job")).json()
        assert job["status"] == "succeeded" and job["result"]["id"] == "first-run-job"
    again = await _post_signed(f"{second.base_url}/hooks/demo", secret, "second-run-job")
    assert again.status_code == 200 and again.json()["duplicate"] is False

    # The other commands find ./relay.toml the same way `serve` does, with the port it was first started on.
    source_url = run_cli("source-url", "demo", cwd=home)
    assert source_url.returncode == 0, source_url.stderr
    assert source_url.stdout.strip() == f"{first.base_url}/hooks/demo"
    check = run_cli("check-config", cwd=home)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("config ok: 1 source(s)")
    assert secret not in check.stdout and api_key not in check.stdout
