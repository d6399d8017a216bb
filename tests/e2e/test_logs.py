"""`relay serve`'s log on stderr: with JSON every line is one object (uvicorn's own lines too), and at debug
level, through every path that handles a credential, no line holds one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from relay.settings import load_settings
from relay.tokens import Tokens
from tests.conftest import API_KEY, DEMO_SECRET, REPLICATE_SECRET, signed_headers, wait_for
from tests.e2e.conftest import SECRET_KEY, RelayProcess, clean_env, write_config
from tests.subscriber import subscriber

Spawn = Callable[..., RelayProcess]
SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLWUyZS1sb2dz"
DB_PASSWORD = "pg-pass-e2e-71f0"


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of `stderr` parsed as a JSON object with `time`, `level` and `event` (failing on any other
    line)."""
    parsed = []
    for line in stderr.splitlines():
        record = orjson.loads(line)
        assert isinstance(record, dict) and {"time", "level", "event"} <= record.keys(), line
        parsed.append(record)
    return parsed


async def test_json_log_lines_of_a_real_serve(tmp_path: Path, spawn: Spawn) -> None:
    """`relay serve --log-format json --access-log`: uvicorn's start-up, access and shutdown lines, relay's
    start-up line and a refused callback with its reason, each one JSON object on its own line."""
    config = write_config(tmp_path / "relay.toml")
    process = spawn("--config", str(config), "--log-format", "json", "--access-log")
    await process.ready()
    async with process.client() as client:
        body = b'{"id": "j", "status": "succeeded"}'
        refused = await client.post(
            "/hooks/demo", content=body, headers=signed_headers(REPLICATE_SECRET, body)
        )
        assert refused.status_code == 401
    await process.stop()
    lines = json_lines(process.stderr)
    events = [line["event"] for line in lines]
    assert any(e.startswith("Uvicorn running on http://127.0.0.1:") for e in events), events
    assert "Application startup complete." in events and "Application shutdown complete." in events
    (started,) = [line for line in lines if line["event"] == "relay.started"]
    assert started["listen"] == f"127.0.0.1:{process.port}" and started["database_kind"] == "sqlite"
    (rejected,) = [line for line in lines if line["event"] == "callback.rejected"]
    assert (rejected["level"], rejected["source"], rejected["reason"]) == ("warning", "demo", "bad_signature")
    access = [line for line in lines if line["event"] == "http.request" and line["path"] == "/hooks/demo"]
    assert [(a["method"], a["status_code"], a["logger"]) for a in access] == [("POST", 401, "uvicorn.access")]


@pytest.mark.postgres
async def test_no_secret_reaches_a_real_serves_log(
    tmp_path: Path, spawn: Spawn, postgres_database: str
) -> None:
    """At debug level with the access log on, on a PostgreSQL URL with a password: API keys good and bad, a
    ticket, a subscription's secret, callbacks signed and refused, an unsigned source's token URL and signed
    deliveries leave no secret, signature or body in any line (the format from RELAY_LOG_FORMAT, over the
    config's)."""
    # The test server trusts loopback connections: the password is accepted and never checked.
    database = postgres_database.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    assert DB_PASSWORD in database
    sources = {"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET}, "luma": {"kind": "unsigned"}}
    config = write_config(
        tmp_path / "relay.toml",
        database=database,
        sources=sources,
        signing_secret=SIGNING_SECRET,
        allow_private_destinations=True,
        log_format="text",
    )
    env = clean_env(RELAY_LOG_FORMAT="json", RELAY_LOG_LEVEL="debug")
    process = spawn("--config", str(config), "--access-log", env=env)
    settings = load_settings(config, environ={})
    hook_token = urlsplit(settings.webhook_url("luma", Tokens(SECRET_KEY))).path.rsplit("/", 1)[1]
    secrets = {API_KEY, DEMO_SECRET, SIGNING_SECRET, SECRET_KEY, DB_PASSWORD, hook_token, "body-marker-0b7e"}
    await process.ready()
    async with subscriber() as sub, process.client() as client, process.client(api_key=None) as anonymous:
        created = await client.post("/v1/subscriptions", json={"url": f"{sub.url}/private-path-2"})
        secrets.update((created.json()["secret"], "private-path-2"))
        registered = await client.post(
            "/v1/jobs", json={"source": "demo", "job_id": "j", "subscribers": [sub.url]}
        )
        ticket = registered.json()["ticket"]
        secrets.add(ticket)
        assert (await anonymous.get("/v1/jobs/demo/j", params={"ticket": ticket})).status_code == 200
        wrong_key = "rk_not-the-key-58c2"
        secrets.add(wrong_key)
        assert (
            await anonymous.get("/v1/jobs", headers={"authorization": f"Bearer {wrong_key}"})
        ).status_code == 401
        body = b'{"id": "j", "status": "succeeded", "output": ["body-marker-0b7e"]}'
        for secret, status in ((REPLICATE_SECRET, 401), (DEMO_SECRET, 200)):
            headers = signed_headers(secret, body)
            secrets.add(headers["webhook-signature"].partition(",")[2])
            assert (await client.post("/hooks/demo", content=body, headers=headers)).status_code == status
        luma = b'{"id": "l1", "status": "succeeded", "note": "body-marker-0b7e"}'
        assert (await anonymous.post(f"/hooks/luma/{hook_token}", content=luma)).status_code == 200
        assert (await anonymous.post(f"/hooks/luma/{hook_token}0", content=luma)).status_code == 401
        received = await sub.received_at_least(3, within=10)
        secrets.update(r.headers["webhook-signature"].partition(",")[2] for r in received)
        await wait_for(lambda: process.stderr.count('"delivery.delivered"') >= 3, within=10)
    await process.stop()
    stderr = process.stderr
    events = {line["event"] for line in json_lines(stderr)}
    expected = {
        "relay.started",
        "http.request",
        "callback.rejected",
        "callback.accepted",
        "delivery.delivered",
    }
    assert expected <= events, events
    leaked = sorted(secret for secret in secrets if secret in stderr)
    assert leaked == [], f"written to the log: {leaked}"
