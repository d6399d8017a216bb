"""Every provider kind end to end: real callbacks to the relay; fal's JWKS on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.cli import main
from relay.settings import Settings
from relay.tokens import Tokens
from tests.conftest import Clock, LiveRelay, Relay, make_settings, open_relay, signed_headers, start_relay
from tests.integration.conftest import SettingsWith
from tests.unit.providers.support import FIXTURE_KEY, JwksServer, fal_body, fal_headers, jwk

OPENAI_SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
WORKER_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
BASETEN_SECRET = "whsec_AbCdEf123456GhIjKlMnOpQrStUvWxYz12345678"
GITHUB_SECRET = "It's a Secret to Everybody"
SIGNER = Ed25519PrivateKey.generate()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PUBLIC_URL = "https://relay.example.com"


def sources(jwks_url: str) -> dict[str, dict[str, Any]]:
    """One source of every kind, as a user would configure them."""
    public_key = "whpk_" + base64.b64encode(SIGNER.public_key().public_bytes_raw()).decode()
    return {
        "fal": {"kind": "fal", "jwks_url": jwks_url},
        "openai": {"kind": "openai", "secret": OPENAI_SECRET},
        "runpod": {"kind": "runpod"},
        "runpod-v2": {"kind": "runpod", "token_version": 2},
        "baseten": {"kind": "baseten", "secret": ["whsec_retired", BASETEN_SECRET]},
        "github": {
            "kind": "hmac",
            "secret": GITHUB_SECRET,
            "header": "X-Hub-Signature-256",
            "prefix": "sha256=",
            "id_header": "X-GitHub-Delivery",
        },
        "luma": {
            "kind": "unsigned",
            "status_pointer": "/state",
            "error_pointer": "/failure_reason",
            "status_map": {"dreaming": "running"},
        },
        "signer": {"kind": "standard-webhooks", "public_key": public_key},
        "workers": {"kind": "standard-webhooks", "secret": WORKER_SECRET, "result_pointer": "/result"},
    }


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    """fal's JWKS, served over HTTP on 127.0.0.1 with the fixture key."""
    async with JwksServer(FIXTURE_KEY) as server:
        yield server


@pytest.fixture
def kinds_settings(settings_with: SettingsWith, jwks: JwksServer) -> Settings:
    """Settings with one source of every kind, on the test's database."""
    return settings_with(sources=sources(jwks.url), public_url=PUBLIC_URL)


@pytest.fixture
async def relay(kinds_settings: Settings) -> AsyncIterator[Relay]:
    """The relay with every kind configured."""
    async with open_relay(kinds_settings) as opened:
        yield opened


@pytest.fixture
async def live_relay(kinds_settings: Settings) -> AsyncIterator[LiveRelay]:
    """The relay with every kind configured, served on 127.0.0.1."""
    async with start_relay(kinds_settings) as live:
        yield live


async def job(relay: Relay, source: str, job_id: str) -> dict[str, Any]:
    response = await relay.client.get(f"/v1/jobs/{source}/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def path_of(url: str) -> str:
    """The path of a webhook URL printed for https://relay.example.com, to post to the relay."""
    return url.removeprefix(PUBLIC_URL)


def source_url(settings: Settings, name: str, tmp_path: Path) -> str:
    """`relay source-url NAME` for these settings, through the real CLI."""
    config = tmp_path / "relay.toml"
    config.write_text(toml(settings))
    result = CliRunner().invoke(main, ["source-url", "--config", str(config), name])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def toml(settings: Settings) -> str:
    """A relay.toml equivalent to `settings` (what a user would write)."""
    lines = [
        f"database = {orjson.dumps(settings.database).decode()}",
        f"secret_key = {orjson.dumps(settings.secret_key).decode()}",
        f"public_url = {orjson.dumps(settings.public_url).decode()}",
        'api_keys = ["k"]',
    ]
    for name, src in sources(settings.sources["fal"].options["jwks_url"]).items():
        lines.append(f'\n[sources."{name}"]')
        for key, value in src.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {orjson.dumps(value).decode()}")
    return "\n".join(lines) + "\n"


# fal


async def test_fal_results_are_verified_and_stored(relay: Relay, jwks: JwksServer) -> None:
    """fal OK and ERROR webhooks, signed with the JWKS key: 200, jobs final; a redelivery is a duplicate."""
    ok = fal_body("req-ok")
    first = await relay.client.post("/hooks/fal", content=ok, headers=fal_headers(FIXTURE_KEY, ok, "req-ok"))
    assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    again = await relay.client.post("/hooks/fal", content=ok, headers=fal_headers(FIXTURE_KEY, ok, "req-ok"))
    assert again.json()["duplicate"] is True  # fal retried after a lost answer
    done = await job(relay, "fal", "req-ok")
    assert done["status"] == "succeeded" and done["result"]["seed"] == 42 and done["callbacks"] == 1
    err = fal_body("req-err", status="ERROR", error="Invalid status code: 422", payload={"detail": []})
    answer = await relay.client.post(
        "/hooks/fal", content=err, headers=fal_headers(FIXTURE_KEY, err, "req-err")
    )
    assert answer.status_code == 200
    failed = await job(relay, "fal", "req-err")
    assert failed["status"] == "failed" and failed["error"] == "Invalid status code: 422"
    assert jwks.requests == 1  # one fetch served all three


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h, b: fal_headers(Ed25519PrivateKey.generate(), b), "bad_signature"),
        (lambda h, b: {**h, "x-fal-webhook-user-id": "someone-else"}, "bad_signature"),
        (
            lambda h, b: fal_headers(FIXTURE_KEY, b, timestamp=int(h["x-fal-webhook-timestamp"]) - 301),
            "stale_timestamp",
        ),
        (
            lambda h, b: fal_headers(FIXTURE_KEY, b, timestamp=int(h["x-fal-webhook-timestamp"]) + 301),
            "stale_timestamp",
        ),
        (lambda h, b: {k: v for k, v in h.items() if k != "x-fal-webhook-signature"}, "missing_signature"),
        (lambda h, b: {k: v for k, v in h.items() if k != "x-fal-webhook-user-id"}, "missing_header"),
    ],
    ids=["unpublished key", "changed user id", "stale", "future", "no signature", "no user id"],
)
async def test_fal_forgeries_are_refused(relay: Relay, mutate: Any, code: str) -> None:
    """Wrong key, a changed signed header, stale or future time, missing headers: 401, nothing stored."""
    body = fal_body("req-1")
    response = await relay.client.post(
        "/hooks/fal", content=body, headers=mutate(fal_headers(FIXTURE_KEY, body), body)
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == code
    assert await relay.services.store.get_job("fal", "req-1") is None


async def test_fal_key_rotation_is_picked_up(kinds_settings: Settings, jwks: JwksServer) -> None:
    """fal rotates its key: a callback signed a minute after the last fetch refetches the JWKS and passes."""
    clock = Clock()
    async with open_relay(kinds_settings, clock=clock) as relay:
        body = fal_body("before")
        headers = fal_headers(FIXTURE_KEY, body, "before", timestamp=int(clock.now))
        assert (await relay.client.post("/hooks/fal", content=body, headers=headers)).status_code == 200
        rotated = Ed25519PrivateKey.generate()
        jwks.keys = [jwk(rotated)]
        clock.advance(61)
        body = fal_body("after")
        headers = fal_headers(rotated, body, "after", timestamp=int(clock.now))
        response = await relay.client.post("/hooks/fal", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert jwks.requests == 2


async def test_fal_unreachable_jwks_is_503(relay: Relay, jwks: JwksServer) -> None:
    """Without fal's keys nothing can be verified: 503 jwks_unavailable, so fal retries; nothing stored."""
    jwks.status = 502
    body = fal_body("req-1")
    response = await relay.client.post("/hooks/fal", content=body, headers=fal_headers(FIXTURE_KEY, body))
    assert response.status_code == 503 and response.json()["error"]["code"] == "jwks_unavailable"
    assert await relay.services.store.get_job("fal", "req-1") is None


# openai


def openai_event(event_type: str, job_id: str, event_id: str = "evt_1") -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "created_at": 1750861210,
            "type": event_type,
            "data": {"id": job_id},
        }
    )


async def test_openai_events_end_jobs_by_type(relay: Relay) -> None:
    """response.completed, batch.expired, fine_tuning.job.cancelled: jobs keyed by data.id end accordingly."""
    for event_type, job_id, status in [
        ("response.completed", "resp_1", "succeeded"),
        ("batch.expired", "batch_1", "failed"),
        ("fine_tuning.job.cancelled", "ftjob_1", "canceled"),
    ]:
        response = await relay.post_callback("openai", openai_event(event_type, job_id), secret=OPENAI_SECRET)
        assert response.status_code == 200 and response.json()["job_id"] == job_id, response.text
        assert (await job(relay, "openai", job_id))["status"] == status


async def test_openai_unknown_event_is_kept_and_counted(relay: Relay) -> None:
    """An event type relay does not know: 200, the job is running, and the source counts a warning."""
    response = await relay.post_callback(
        "openai", openai_event("video.remixed", "video_1"), secret=OPENAI_SECRET
    )
    assert response.status_code == 200
    assert (await job(relay, "openai", "video_1"))["status"] == "running"
    assert relay.services.providers["openai"].warnings["unknown_event_type"] == 1


async def test_openai_wrong_secret_is_refused(relay: Relay) -> None:
    """Signed with another secret: 401 bad_signature."""
    response = await relay.post_callback(
        "openai", openai_event("response.completed", "r"), secret=WORKER_SECRET
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"


# runpod and other unsigned providers


def runpod_job(status: str, **fields: Any) -> bytes:
    return orjson.dumps({"id": "rp-1", "status": status, "delayTime": 10, "executionTime": 20, **fields})


async def test_runpod_posts_to_the_source_url_with_its_token(
    relay: Relay, kinds_settings: Settings, tmp_path: Path
) -> None:
    """The URL from `relay source-url runpod` takes RunPod's unsigned job envelopes; its retries dedupe."""
    url = source_url(kinds_settings, "runpod", tmp_path)
    assert url.startswith("https://relay.example.com/hooks/runpod/")
    path = path_of(url)
    assert (await relay.client.post(path, content=runpod_job("IN_PROGRESS"))).status_code == 200
    assert (await job(relay, "runpod", "rp-1"))["status"] == "running"
    done = runpod_job("COMPLETED", output={"image_url": "https://x/y.png"})
    first, retry = [await relay.client.post(path, content=done) for _ in range(2)]
    assert first.json()["duplicate"] is False and retry.json()["duplicate"] is True
    final = await job(relay, "runpod", "rp-1")
    assert final["status"] == "succeeded" and final["result"] == {"image_url": "https://x/y.png"}


async def test_runpod_without_or_with_a_wrong_token_is_refused(
    relay: Relay, kinds_settings: Settings
) -> None:
    """No token: 401 missing_token; another source's or a forged token: 401 bad_token; nothing stored."""
    body = runpod_job("COMPLETED")
    other = relay.services.tokens.hook_token("luma")
    for path, code in [
        ("/hooks/runpod", "missing_token"),
        (f"/hooks/runpod/{other}", "bad_token"),
        ("/hooks/runpod/forged.token", "bad_token"),
    ]:
        response = await relay.client.post(path, content=body)
        assert response.status_code == 401 and response.json()["error"]["code"] == code
    assert await relay.services.store.get_job("runpod", "rp-1") is None


async def test_runpod_token_version_rotates_the_url(
    relay: Relay, kinds_settings: Settings, tmp_path: Path
) -> None:
    """With token_version the printed URL works and a URL made before the bump (name only) is refused."""
    tokens = relay.services.tokens
    old = await relay.client.post(
        f"/hooks/runpod-v2/{tokens.hook_token('runpod-v2')}", content=runpod_job("FAILED")
    )
    assert old.status_code == 401 and old.json()["error"]["code"] == "bad_token"
    current = path_of(source_url(kinds_settings, "runpod-v2", tmp_path))
    response = await relay.client.post(current, content=runpod_job("FAILED", error="boom"))
    assert response.status_code == 200
    failed = await job(relay, "runpod-v2", "rp-1")
    assert failed["status"] == "failed" and failed["error"] == "boom"


async def test_unsigned_luma_generation_updates(relay: Relay) -> None:
    """An `unsigned` source takes Luma's generation updates (dreaming, then completed) at the token URL."""
    path = f"/hooks/luma/{relay.services.tokens.hook_token('luma')}"
    generation = {"id": "gen-1", "state": "dreaming", "assets": None, "failure_reason": None}
    assert (await relay.client.post(path, content=orjson.dumps(generation))).status_code == 200
    completed = {**generation, "state": "completed", "assets": {"video": "https://v.mp4"}}
    assert (await relay.client.post(path, content=orjson.dumps(completed))).status_code == 200
    assert (await job(relay, "luma", "gen-1"))["status"] == "succeeded"


async def test_signed_source_refuses_a_token_url(relay: Relay) -> None:
    """A token path on a signed source is 404: signed sources post to /hooks/NAME."""
    response = await relay.client.post(
        f"/hooks/openai/{relay.services.tokens.hook_token('openai')}", content=b"{}"
    )
    assert response.status_code == 404


# baseten and generic hmac


def baseten_post(relay: Relay, request_id: str, errors: list[Any], secret: str = BASETEN_SECRET) -> Any:
    """Post an async predict result as Baseten sends it, timed now and signed with `secret`."""
    body = orjson.dumps(
        {
            "request_id": request_id,
            "model_id": "my_model_id",
            "deployment_id": "my_deployment_id",
            "type": "async_request_completed",
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": None if errors else {"my_model_output": "hello world!"},
            "errors": errors,
        }
    )
    signature = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return relay.client.post("/hooks/baseten", content=body, headers={"x-baseten-signature": signature})


async def test_baseten_results(relay: Relay) -> None:
    """A signed result succeeds, one with errors fails, a redelivery is a duplicate, a forgery is 401."""
    assert (await baseten_post(relay, "req-a", [])).json()["duplicate"] is False
    assert (await baseten_post(relay, "req-a", [])).json()["duplicate"] is True
    assert (await job(relay, "baseten", "req-a"))["result"] == {"my_model_output": "hello world!"}
    assert (await baseten_post(relay, "req-b", [{"message": "boom"}])).status_code == 200
    assert (await job(relay, "baseten", "req-b"))["status"] == "failed"
    forged = await baseten_post(relay, "req-c", [], secret="whsec_guess")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "bad_signature"


async def test_github_style_hmac_source(relay: Relay) -> None:
    """An `hmac` source verifies `sha256=<hex>` in X-Hub-Signature-256 and dedupes on X-GitHub-Delivery."""
    body = b'{"id": "run-1", "status": "completed"}'
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature-256": signature, "x-github-delivery": "d-1"}
    first, again = [await relay.client.post("/hooks/github", content=body, headers=headers) for _ in range(2)]
    assert first.status_code == 200 and again.json()["duplicate"] is True
    tampered = await relay.client.post("/hooks/github", content=body.replace(b"1", b"2"), headers=headers)
    assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "bad_signature"


# standard-webhooks v1a and custom workers (the Modal recipe)


async def test_v1a_ed25519_source(relay: Relay) -> None:
    """A standard-webhooks source with a whpk_ public key takes v1a ed25519 signatures and refuses others."""
    body = b'{"id": "w-1", "status": "succeeded"}'
    headers = signed_headers(WORKER_SECRET, body)  # webhook-id and timestamp, then re-signed with v1a
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    good = {**headers, "webhook-signature": "v1a," + base64.b64encode(SIGNER.sign(content)).decode()}
    assert (await relay.client.post("/hooks/signer", content=body, headers=good)).status_code == 200
    response = await relay.client.post("/hooks/signer", content=body, headers=headers)  # v1 only: no secret
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_worker_recipe_reports_to_relay(live_relay: LiveRelay) -> None:
    """examples/relay_callback.py (what the Modal example calls) posts signed updates relay accepts."""
    relay = live_relay
    recipe = load_example("relay_callback")
    url = f"{relay.base_url}/hooks/workers"
    running = await asyncio.to_thread(recipe.post_result, url, WORKER_SECRET, "fc-01", "running")
    assert running["accepted"] is True
    await asyncio.to_thread(recipe.post_result, url, WORKER_SECRET, "fc-01", "succeeded", result={"url": "u"})
    done = await job(relay, "workers", "fc-01")
    assert done["status"] == "succeeded" and done["result"] == {"url": "u"}
    with pytest.raises(Exception, match="401"):
        await asyncio.to_thread(recipe.post_result, url, OPENAI_SECRET, "fc-02", "failed", error="x")


# the CLI


def test_check_config_prints_every_source_url(jwks: JwksServer, tmp_path: Path) -> None:
    """`relay check-config` validates every kind and prints each URL, with the token for unsigned ones."""
    kinds_settings = make_settings(tmp_path, sources=sources(jwks.url), public_url=PUBLIC_URL)
    config = tmp_path / "relay.toml"
    config.write_text(toml(kinds_settings))
    result = CliRunner().invoke(main, ["check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("config ok: 9 source(s)")
    assert "  fal (fal): https://relay.example.com/hooks/fal" in lines
    assert "  baseten (baseten): https://relay.example.com/hooks/baseten" in lines
    [runpod] = [
        line
        for line in lines
        if line.startswith("  runpod (runpod): https://relay.example.com/hooks/runpod/")
    ]
    assert Tokens(kinds_settings.secret_key).hook_token_valid("runpod", runpod.rsplit("/", 1)[1])
    assert BASETEN_SECRET not in result.output and GITHUB_SECRET not in result.output


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('kind = "hmac"\nsecret = "s"', "sources.x.header"),
        ('kind = "fal"\njwks_url = "ftp://x"', "sources.x.jwks_url"),
        ('kind = "baseten"', "sources.x.secret"),
        ('kind = "runpod"\ntoken_version = 1.5', "sources.x.token_version"),
        ('kind = "standard-webhooks"\npublic_key = "whpk_AAAA"', "sources.x.public_key"),
        ('kind = "openai"\nsecret = "whsec_x"\njwks_url = "https://x"', "sources.x.jwks_url"),
    ],
)
def test_check_config_names_bad_kind_keys(tmp_path: Path, table: str, named: str) -> None:
    """A kind-specific mistake stops check-config with a message naming the key."""
    config = tmp_path / "relay.toml"
    config.write_text(f'secret_key = "k"\napi_keys = ["k"]\n\n[sources.x]\n{table}\n')
    result = CliRunner().invoke(main, ["check-config", "--config", str(config)])
    assert result.exit_code == 2 and named in result.output, result.output
