"""Log lines as relay's JSON formatter writes them, one per event, with the ids an operator filters on; and no
secret, key, signature or body in any of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.delivery import Deliverer
from relay.errors import ConfigError
from relay.logs import JsonFormatter, Redactor, log_started
from relay.loops import Loop
from relay.outbox_models import endpoint_of
from relay.settings import Settings, load_settings
from relay.sweeper import Sweeper
from tests.conftest import (
    API_KEY,
    DEMO_SECRET,
    REPLICATE_SECRET,
    Clock,
    Relay,
    make_settings,
    open_relay,
    signed_headers,
    start_relay,
    wait_for,
)
from tests.fake_provider_api import FakeProviderApi
from tests.integration.conftest import SettingsWith
from tests.integration.test_deliveries import deliver, settings_for, subscribe
from tests.postgres import outage
from tests.subscriber import Reply, subscriber

T0 = 1_900_000_000.0
SIGNING_SECRET = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLWxvZ3MtdGVzdA=="


class Lines(logging.Handler):
    """Every record, as relay's JSON formatter writes it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter(redactor))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def events(self, name: str) -> list[dict[str, Any]]:
        """The lines of event `name`, parsed."""
        return [line for line in map(orjson.loads, self.lines) if line["event"] == name]

    def one(self, name: str) -> dict[str, Any]:
        (line,) = self.events(name)
        return line


@contextmanager
def captured(settings: Settings | None = None, level: int = logging.DEBUG) -> Iterator[Lines]:
    """relay's records from `level` up, formatted as `relay serve --log-format json` writes them (redacting
    the secrets of `settings`)."""
    lines = Lines(Redactor() if settings is None else Redactor.for_settings(settings))
    root, relay_logger = logging.getLogger(), logging.getLogger("relay")
    before = relay_logger.level
    root.addHandler(lines)
    relay_logger.setLevel(level)
    try:
        yield lines
    finally:
        root.removeHandler(lines)
        relay_logger.setLevel(before)


def _the_basics(line: dict[str, Any], level: str) -> None:
    assert line["level"] == level
    assert line["time"].endswith("Z") and line["time"][10] == "T"


async def test_a_rejected_callback_is_logged_with_its_reason(relay: Relay) -> None:
    """A warning per refused callback: its source, the error code as `reason`, the HTTP status, the time
    taken; never the body or the signature."""
    body = b'{"id": "j", "status": "succeeded", "marker": "body-marker-7f3a"}'
    headers = signed_headers(REPLICATE_SECRET, body)  # the wrong source's secret
    with captured() as lines:
        assert (await relay.client.post("/hooks/demo", content=body, headers=headers)).status_code == 401
        assert (await relay.client.post("/hooks/nowhere", content=body)).status_code == 404
    bad_signature, unknown = lines.events("callback.rejected")
    _the_basics(bad_signature, "warning")
    assert bad_signature["source"] == "demo" and bad_signature["reason"] == "bad_signature"
    assert bad_signature["status_code"] == 401 and bad_signature["latency_ms"] >= 0
    assert (unknown["source"], unknown["reason"], unknown["status_code"]) == (
        "nowhere",
        "unknown_source",
        404,
    )
    text = "\n".join(lines.lines)
    assert "body-marker-7f3a" not in text and headers["webhook-signature"] not in text


async def test_accepted_at_debug_and_duplicate_at_info(relay: Relay) -> None:
    """An accepted callback is a debug line (source, job, webhook id, status); its redelivery is an info
    line `callback.duplicate`; at info level the accepted one costs no line."""
    body = b'{"id": "j1", "status": "succeeded"}'
    with captured(level=logging.INFO) as quiet:
        await relay.post_callback("demo", b'{"id": "j0", "status": "running"}')
    assert quiet.events("callback.accepted") == []
    with captured() as lines:
        assert (await relay.post_callback("demo", body, msg_id="msg_first")).status_code == 200
        assert (await relay.post_callback("demo", body, msg_id="msg_first")).status_code == 200
    accepted, duplicate = lines.one("callback.accepted"), lines.one("callback.duplicate")
    _the_basics(accepted, "debug")
    _the_basics(duplicate, "info")
    for line in (accepted, duplicate):
        assert (line["source"], line["job_id"], line["webhook_id"]) == ("demo", "j1", "msg_first")
        assert line["status"] == "succeeded" and line["latency_ms"] >= 0


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


async def test_time_out_and_a_late_result(settings_with: SettingsWith, clock: Clock) -> None:
    """`job.timed_out` when the sweeper ends a job; `job.late` when its result comes after that."""
    sources = {"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET, "timeout_s": 100}}
    async with open_relay(settings_with(sources=sources), clock, background=False) as relay:
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "slow"})
        with captured() as lines:
            await relay.services.loop(Sweeper).run_once(T0 + 101)
            clock.advance(120)
            body = b'{"id": "slow", "status": "succeeded"}'
            assert (await relay.post_callback("demo", body, timestamp=clock.now)).status_code == 200
    timed_out, late = lines.one("job.timed_out"), lines.one("job.late")
    _the_basics(timed_out, "warning")
    assert (timed_out["source"], timed_out["job_id"]) == ("demo", "slow")
    _the_basics(late, "warning")
    assert (late["source"], late["job_id"], late["status"]) == ("demo", "slow", "succeeded")


async def test_reconciled_and_a_failed_reconcile(
    settings_with: SettingsWith, api: FakeProviderApi, clock: Clock
) -> None:
    """An overdue job the provider's API answered is `job.reconciled` (with the status); one whose API
    call failed is `job.reconcile_failed` (with the error), and then times out."""
    replicate = {
        "kind": "replicate",
        "secret": REPLICATE_SECRET,
        "api_token": "r8_logs-test-token",
        "api_base_url": f"{api.base_url}/v1",
        "timeout_s": 100,
    }
    settings = settings_with(sources={"replicate": replicate}, reconcile_timeout_s=0.2)
    api.answer("/v1/predictions/done", {"id": "done", "status": "succeeded", "output": ["x.png"]})
    api.hang.add("/v1/predictions/stuck")
    async with open_relay(settings, clock, background=False) as relay:
        for job_id in ("done", "stuck"):
            await relay.client.post("/v1/jobs", json={"source": "replicate", "job_id": job_id})
        with captured(settings) as lines:
            await relay.services.loop(Sweeper).run_once(T0 + 101)
    reconciled, failed = lines.one("job.reconciled"), lines.one("job.reconcile_failed")
    _the_basics(reconciled, "info")
    assert (reconciled["source"], reconciled["job_id"], reconciled["status"]) == (
        "replicate",
        "done",
        "succeeded",
    )
    _the_basics(failed, "warning")
    assert (failed["job_id"], failed["error"]) == ("stuck", "TimeoutError")
    assert lines.one("job.timed_out")["job_id"] == "stuck"
    assert "r8_logs-test-token" not in "\n".join(lines.lines)


async def test_delivery_failed_dead_and_subscription_disabled(
    settings_with: SettingsWith, clock: Clock
) -> None:
    """Each attempt's result is a line with the delivery's ids (a success only at debug); a 410 disables the
    subscription, which is a line of its own; a subscriber's URL path is never written, only its endpoint."""
    settings = settings_for(settings_with, retry_schedule_s=[5.0], retry_jitter=0.0)
    failing = subscriber([Reply(500, b"boom")], then=Reply(503, b"still down"))
    async with failing as down, subscriber(then=Reply(410)) as gone, subscriber() as fine:
        async with open_relay(settings, clock, background=False) as relay:
            down_endpoint = endpoint_of(down.url)
            flaky = await subscribe(relay, f"{down.url}/secret-path-1")
            retired = await subscribe(relay, gone.url)
            await subscribe(relay, fine.url)
            body = b'{"id": "j", "status": "succeeded"}'
            assert (await relay.post_callback("demo", body, timestamp=clock.now)).status_code == 200
            with captured() as lines:
                assert await deliver(relay, clock.now) == 3
                assert await deliver(relay, clock.advance(6)) == 1
    failed, delivered, disabled = (
        lines.one("delivery.failed"),
        lines.one("delivery.delivered"),
        lines.one("subscription.disabled"),
    )
    _the_basics(failed, "info")
    assert failed["subscription_id"] == flaky["id"] and failed["delivery_id"].startswith("dlv_")
    assert failed["webhook_id"].startswith("evt_") and (failed["source"], failed["job_id"]) == ("demo", "j")
    assert (failed["status"], failed["status_code"], failed["attempt"]) == ("retrying", 500, 1)
    assert failed["next_attempt_at"].endswith("Z") and failed["latency_ms"] > 0
    assert failed["endpoint"] == down_endpoint
    _the_basics(delivered, "debug")
    dead_by_subscription = {line["subscription_id"]: line for line in lines.events("delivery.dead")}
    assert set(dead_by_subscription) == {flaky["id"], retired["id"]}
    assert dead_by_subscription[flaky["id"]]["status_code"] == 503
    assert dead_by_subscription[retired["id"]]["status_code"] == 410
    assert all(line["level"] == "warning" for line in dead_by_subscription.values())
    _the_basics(disabled, "warning")
    assert (disabled["subscription_id"], disabled["reason"]) == (retired["id"], "410 Gone")
    assert "secret-path-1" not in "\n".join(lines.lines)


@pytest.mark.postgres
async def test_sweeper_and_deliverer_round_failures(tmp_path: Path, postgres_database: str) -> None:
    """A round that raises (its database gone) is an error line naming the loop, the failures in a row, the
    error, and the traceback."""
    settings = make_settings(tmp_path, database=postgres_database)
    async with open_relay(settings, background=False) as relay, outage(postgres_database):
        with captured() as lines:
            await _one_failed_round(relay.services.loop(Sweeper))
            await _one_failed_round(relay.services.loop(Deliverer))
    by_loop = {line["loop"]: line for line in lines.events("loop.round_failed")}
    assert set(by_loop) == {"sweeper", "deliverer"}
    for line in by_loop.values():
        _the_basics(line, "error")
        assert line["failures"] == 1 and line["error"]
        assert "Traceback" in line["exception"]


async def _one_failed_round(loop: Loop) -> None:
    """Run `loop` until a round has failed, then stop it."""
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    await wait_for(lambda: loop.failures >= 1)
    stop.set()
    await running


async def test_start_up_line_names_version_database_sources_and_address(settings: Settings) -> None:
    """`relay.started` once serving: the version, the database's kind and URL, the sources by kind, the
    address it listens on."""
    with captured() as lines:
        async with start_relay(settings) as live:
            pass
    started = lines.one("relay.started")
    _the_basics(started, "info")
    assert started["version"] == "0.1.0" and started["worker"] is True
    assert started["sources"] == {"demo": "standard-webhooks", "replicate": "replicate"}
    assert started["listen"] == live.base_url.removeprefix("http://")
    assert started["database_kind"] in ("sqlite", "postgresql")
    assert started["database_url"] == settings.database.partition("?")[0]


def test_start_up_line_hides_the_database_password(tmp_path: Path) -> None:
    """A PostgreSQL URL's password is written as ***; its options as a field of their own."""
    url = "postgresql://relay:pg-pass-9d1c@db.internal:5432/relay?pool_max=4"
    settings = make_settings(tmp_path, database=url)
    with captured(Settings(secret_key="k", api_keys=())) as lines:  # no value to scrub: the URL's form only
        log_started(settings, listen=None, worker=True)
    started = lines.one("relay.started")
    assert started["database_kind"] == "postgresql" and started["listen"] is None
    assert started["database_url"] == "postgresql://relay:***@db.internal:5432/relay"
    assert started["database_options"] == {"pool_max": "4"}
    assert "pg-pass-9d1c" not in lines.lines[0]


def test_log_settings_from_config_env_and_command_line(tmp_path: Path) -> None:
    """The config's keys, over them RELAY_LOG_FORMAT/RELAY_LOG_LEVEL, over those the command line's; the
    level in any case; anything else refused naming the key."""
    config = tmp_path / "relay.toml"
    config.write_text('secret_key = "k"\napi_keys = ["a"]\nlog_format = "json"\nlog_level = "warning"\n')
    from_config = load_settings(config, {})
    assert (from_config.log_format, from_config.log_level) == ("json", "warning")
    env = {"RELAY_LOG_FORMAT": "text", "RELAY_LOG_LEVEL": "DEBUG"}
    from_env = load_settings(config, env)
    assert (from_env.log_format, from_env.log_level) == ("text", "debug")
    from_cli = load_settings(config, env, {"log_format": "json", "log_level": "error"})
    assert (from_cli.log_format, from_cli.log_level) == ("json", "error")
    for key, value in (("log_format", "xml"), ("log_level", "loud")):
        with pytest.raises(ConfigError, match=key):
            load_settings(config, {}, {key: value})


async def test_secrets_never_reach_the_log(settings_with: SettingsWith, backend: str) -> None:
    """At debug level, through callbacks signed and refused, a token URL, API keys, tickets, a subscription's
    secret and signed deliveries, on a database URL with a password: no line holds any secret, key,
    signature or body."""
    database = settings_with().database
    if backend == "postgres":  # the test server trusts loopback, so a password is accepted and unused
        database = database.replace("postgresql://postgres@", "postgresql://postgres:pg-pass-5e2b@")
    luma = {"kind": "unsigned"}
    sources = {"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET}, "luma": luma}
    settings = settings_for(settings_with, database=database, sources=sources, signing_secret=SIGNING_SECRET)
    secrets = {API_KEY, DEMO_SECRET, SIGNING_SECRET, "pg-pass-5e2b", "body-marker-c41d", "private-path"}
    secrets.add(settings.secret_key)
    async with subscriber() as sub:
        with captured(settings) as lines:
            async with start_relay(settings) as relay:
                subscription = await subscribe(relay, f"{sub.url}/private-path")
                secrets.add(subscription["secret"])
                registered = await relay.client.post(
                    "/v1/jobs", json={"source": "demo", "job_id": "j", "subscribers": [sub.url]}
                )
                ticket = registered.json()["ticket"]
                secrets.add(ticket)
                async with relay.anonymous() as anonymous:
                    assert (await anonymous.get(f"/v1/jobs/demo/j?ticket={ticket}")).status_code == 200
                    wrong_key = {"authorization": "Bearer not-the-key-3a9f"}
                    assert (await anonymous.get("/v1/jobs", headers=wrong_key)).status_code == 401
                    secrets.add("not-the-key-3a9f")
                body = b'{"id": "j", "status": "succeeded", "output": ["body-marker-c41d"]}'
                for secret in (REPLICATE_SECRET, DEMO_SECRET):  # refused, then accepted
                    headers = signed_headers(secret, body)
                    secrets.add(headers["webhook-signature"].partition(",")[2])
                    await relay.client.post("/hooks/demo", content=body, headers=headers)
                token = relay.services.tokens.hook_token("luma")
                secrets.add(token)
                luma_body = b'{"id": "l1", "status": "succeeded", "marker": "body-marker-c41d"}'
                assert (await relay.client.post(f"/hooks/luma/{token}", content=luma_body)).status_code == 200
                assert (
                    await relay.client.post(f"/hooks/luma/{token}x", content=luma_body)
                ).status_code == 401
                received = await sub.received_at_least(2)
                secrets.update(r.headers["webhook-signature"].partition(",")[2] for r in received)
                await wait_for(lambda: len(lines.events("delivery.delivered")) >= 2)
    written = "\n".join(lines.lines)
    for event in ("relay.started", "callback.rejected", "callback.accepted", "delivery.delivered"):
        assert lines.events(event), f"no {event} line: the scenario did not run"
    leaked = sorted(secret for secret in secrets if secret in written)
    assert leaked == [], f"written to the log: {leaked}"
