"""`relay jobs ...` against a real relay: JSON on stdout, and `wait`'s exit statuses (0 succeeded, 1 ended
otherwise, 3 still not final at --timeout, 2 usage or connection errors)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result

from relay.cli import main
from tests.client.conftest import post_status
from tests.conftest import (
    API_KEY,
    DEMO_SECRET,
    REPLICATE_SECRET,
    LiveRelay,
    free_port,
    make_settings,
    start_relay,
    wait_for,
)
from tests.e2e.conftest import write_config
from tests.fake_provider_api import fake_provider_api


async def relay_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `relay ARGS` in a thread (the relay under test serves on this event loop)."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env or {})


def api(relay: LiveRelay) -> list[str]:
    return ["--url", relay.base_url, "--api-key", API_KEY]


async def test_register_get_and_list_print_json(live_relay: LiveRelay) -> None:
    """register prints the job with its ticket and webhook URL; get and list print the job objects."""
    registered = await relay_cli(
        "jobs",
        "register",
        "demo",
        "j1",
        "--timeout-s",
        "60",
        "--metadata",
        '{"prompt": "fox"}',
        *api(live_relay),
    )
    assert registered.exit_code == 0, registered.output
    job = json.loads(registered.stdout)
    assert (
        job["metadata"] == {"prompt": "fox"} and job["ticket"] and job["webhook_url"].endswith("/hooks/demo")
    )

    got = await relay_cli(
        "jobs", "get", "demo", "j1", "--url", live_relay.base_url, "--ticket", job["ticket"]
    )
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["status"] == "pending"

    await post_status(live_relay, "j2", "failed")
    listed = await relay_cli("jobs", "list", "--status", "failed", *api(live_relay))
    assert listed.exit_code == 0, listed.output
    assert [j["job_id"] for j in json.loads(listed.stdout)["jobs"]] == ["j2"]


async def test_wait_exits_0_when_the_job_succeeds_and_1_when_it_fails(live_relay: LiveRelay) -> None:
    """The final job on stdout; the exit status says how it ended."""
    for job_id, status, code in (("ok", "succeeded", 0), ("bad", "failed", 1), ("stop", "canceled", 1)):
        waiting = asyncio.create_task(
            relay_cli("jobs", "wait", "demo", job_id, "--timeout", "30", *api(live_relay))
        )
        await wait_for(lambda: live_relay.services.hub.count == 1)
        await post_status(live_relay, job_id, status)
        result = await asyncio.wait_for(waiting, 10)
        assert result.exit_code == code, result.output
        assert json.loads(result.stdout)["status"] == status


async def test_wait_exits_3_when_the_job_is_not_final_at_its_timeout(live_relay: LiveRelay) -> None:
    """Still pending at --timeout: the job as it stands on stdout, a message on stderr, exit status 3."""
    await post_status(live_relay, "slow", "processing")
    result = await relay_cli("jobs", "wait", "demo", "slow", "--timeout", "0.3", *api(live_relay))
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["status"] == "running"
    assert "still running" in result.stderr


async def test_usage_and_connection_errors_exit_2(live_relay: LiveRelay) -> None:
    """A missing argument, a relay that does not answer, a refused key: exit status 2 and no JSON."""
    usage = await relay_cli("jobs", "wait", "demo", *api(live_relay))
    assert usage.exit_code == 2 and usage.stdout == ""
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = await relay_cli(
        "jobs", "wait", "demo", "x", "--timeout", "0.3", "--url", closed, "--api-key", "k"
    )
    assert unreachable.exit_code == 2 and unreachable.stdout == ""
    assert "connection_error" in unreachable.stderr
    refused = await relay_cli("jobs", "get", "demo", "x", "--url", live_relay.base_url, "--api-key", "wrong")
    assert refused.exit_code == 2 and "bad_api_key" in refused.stderr
    missing = await relay_cli("jobs", "get", "demo", "nope", *api(live_relay))
    assert missing.exit_code == 2 and "unknown_job" in missing.stderr


async def test_events_print_one_json_object_per_line(live_relay: LiveRelay) -> None:
    """Each event is one line of JSON (position, type, job), and the command ends after the final state."""
    await post_status(live_relay, "e1", "processing")
    await post_status(live_relay, "e1", "succeeded")
    result = await relay_cli("jobs", "events", "demo", "e1", *api(live_relay))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["job"]["status"]) for e in lines] == [
        ("job.running", "running"),
        ("job.succeeded", "succeeded"),
    ]
    assert lines[0]["id"] < lines[1]["id"] and lines[1]["event_id"].startswith("evt_")


async def test_the_url_and_key_come_from_the_config_or_the_environment(
    live_relay: LiveRelay, tmp_path: Path
) -> None:
    """Without --url and --api-key the config's address and first API key are used (as `relay deliveries`
    does); RELAY_URL and RELAY_API_KEY stand in for the options."""
    await post_status(live_relay, "c1", "succeeded")
    config = write_config(
        tmp_path / "cli" / "relay.toml",
        public_url=live_relay.base_url,
        api_keys=[API_KEY],
        sources={"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET}},
    )
    from_config = await relay_cli("jobs", "wait", "demo", "c1", "--config", str(config))
    assert from_config.exit_code == 0, from_config.output
    from_env = await relay_cli(
        "jobs", "get", "demo", "c1", env={"RELAY_URL": live_relay.base_url, "RELAY_API_KEY": API_KEY}
    )
    assert from_env.exit_code == 0, from_env.output
    assert json.loads(from_env.stdout)["status"] == "succeeded"


async def test_cancel_prints_the_job_or_exits_2_saying_why(tmp_path: Path) -> None:
    """`jobs cancel` asks relay, which asks Replicate (faked on loopback): the canceled job on stdout; a job
    of a kind with no cancel API exits 2 with cancel_unsupported on stderr."""
    async with fake_provider_api() as provider:
        replicate = {
            "kind": "replicate",
            "secret": REPLICATE_SECRET,
            "api_token": "r8_test",
            "api_base_url": f"{provider.base_url}/v1",
        }
        sources = {"demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET}, "replicate": replicate}
        async with start_relay(make_settings(tmp_path, sources=sources), background=False) as relay:
            for source, job_id in (("replicate", "p1"), ("demo", "d1")):
                registered = await relay_cli("jobs", "register", source, job_id, *api(relay))
                assert registered.exit_code == 0, registered.output
            provider.answer("/v1/predictions/p1/cancel", {"id": "p1", "status": "canceled", "error": None})
            canceled = await relay_cli("jobs", "cancel", "replicate", "p1", *api(relay))
            assert canceled.exit_code == 0, canceled.output
            assert json.loads(canceled.stdout)["status"] == "canceled"
            unsupported = await relay_cli("jobs", "cancel", "demo", "d1", *api(relay))
            assert unsupported.exit_code == 2 and unsupported.stdout == ""
            assert "cancel_unsupported" in unsupported.stderr
    assert provider.calls == [("POST", "/v1/predictions/p1/cancel")]
