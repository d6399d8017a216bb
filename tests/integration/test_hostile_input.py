"""Hostile values through the API: refused with a 400 before anything is stored, or stored and readable by
every read path. Values already in the database from before these checks must not break a read either."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from contextlib import closing
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
import pytest
from click.testing import CliRunner

from relay.cli import main as cli
from tests.conftest import LiveRelay, Relay, start_relay, wait_for
from tests.integration.conftest import SettingsWith
from tests.integration.test_events_stream import read_messages
from tests.subscriber import subscriber


def nested(depth: int) -> Any:
    """A value of `depth` nested arrays: [[[...]]]."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def path_of(job_id: str) -> str:
    """The job's URL path, every character but letters and digits percent-encoded (dots too, so no client
    or proxy folds `.` and `..` away)."""
    return "/v1/jobs/demo/" + quote(job_id, safe="").replace(".", "%2E")


async def assert_nothing_stored(relay: Relay) -> None:
    """The API shows no job (so no history either: an entry belongs to its job), subscription or delivery."""
    for path, key in (
        ("/v1/jobs", "jobs"),
        ("/v1/subscriptions", "subscriptions"),
        ("/v1/deliveries", "deliveries"),
    ):
        listed = await relay.client.get(path)
        assert listed.status_code == 200 and listed.json()[key] == [], (path, listed.text)


async def read_every_way(relay: Relay, job_id: str) -> dict[str, Any]:
    """The job through get, wait, list, events and history; each must answer it, and the same job."""
    got = await relay.client.get(path_of(job_id))
    assert got.status_code == 200, got.text
    job = got.json()
    assert job["job_id"] == job_id
    waited = await relay.client.get(path_of(job_id), params={"wait": "0.01"})
    assert waited.status_code == 200 and waited.json()["job_id"] == job_id
    listed = await relay.client.get("/v1/jobs", params={"source": "demo", "limit": 500})
    assert listed.status_code == 200, listed.text
    assert job_id in [j["job_id"] for j in listed.json()["jobs"]]
    history = await relay.client.get(path_of(job_id) + "/callbacks")
    assert history.status_code == 200, history.text
    if job["status"] not in ("pending", "running"):  # a final job's stream sends its events and closes
        async with relay.client.stream("GET", path_of(job_id) + "/events") as response:
            assert response.status_code == 200
            messages = await asyncio.wait_for(read_messages(response), 10)
        assert messages and all(orjson.loads(m["data"])["data"]["job_id"] == job_id for m in messages)
    return job  # type: ignore[no-any-return]


@pytest.mark.parametrize("timeout_s", [1e308, 3e11, 2.0**70, 10**30, 0, -5, 366 * 86_400 + 1])
async def test_absurd_timeouts_are_400_and_store_nothing(relay: Relay, timeout_s: float) -> None:
    """A timeout no deadline can hold is refused before anything is stored."""
    body = b'{"source": "demo", "job_id": "j", "timeout_s": %s}' % str(timeout_s).encode()
    response = await relay.client.post("/v1/jobs", content=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_field"
    await assert_nothing_stored(relay)


async def test_the_longest_timeout_is_taken_and_reads_back(relay: Relay) -> None:
    """A timeout at the bound is stored, and its deadline reads back through every path."""
    before = time.time()
    response = await relay.client.post(
        "/v1/jobs", json={"source": "demo", "job_id": "j", "timeout_s": 31_622_400}
    )
    after = time.time()
    assert response.status_code == 201
    deadline = datetime.fromisoformat((await read_every_way(relay, "j"))["deadline"]).timestamp()
    assert before + 31_622_400 - 1 <= deadline <= after + 31_622_400 + 1


@pytest.mark.parametrize("depth", [65, 200, 253, 1100])
async def test_deep_callbacks_are_400_and_store_nothing(relay: Relay, depth: int) -> None:
    """A callback nested past the bound is a 400 `too_deep` (not a 500 its provider retries forever)."""
    inner = depth - 1  # the body's own object is the first level
    payload = b'{"id": "deep", "status": "succeeded", "output": ' + b"[" * inner + b"]" * inner + b"}"
    response = await relay.post_callback("demo", payload)
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_deep"
    await assert_nothing_stored(relay)


async def test_a_callback_at_the_depth_bound_reads_back_every_way(relay: Relay) -> None:
    """A callback exactly at the bound is stored, and the job, its stream and its history all encode."""
    response = await relay.post_callback(
        "demo", orjson.dumps({"id": "deep", "status": "succeeded", "output": nested(63)})
    )
    assert response.status_code == 200, response.text
    assert (await read_every_way(relay, "deep"))["result"]["output"] == nested(63)


async def test_an_error_text_holding_nul_is_taken_and_reads_back(relay: Relay) -> None:
    """A failed callback whose error message holds NUL is stored (not a 500 its provider retries forever)
    and reads back the same through the job, the list and its event, on either backend: with U+FFFD, the
    replacement character, in the NUL's place (PostgreSQL's text holds no NUL)."""
    sent = "CUDA \x00 error"
    body = orjson.dumps({"id": "nul", "status": "failed", "error": sent, "output": "kept"})
    response = await relay.post_callback("demo", body)
    assert response.status_code == 200, response.text
    error = sent.replace("\x00", "\ufffd")
    job = await read_every_way(relay, "nul")
    assert (job["status"], job["error"], job["result"]["output"]) == ("failed", error, "kept")
    (listed,) = (await relay.client.get("/v1/jobs")).json()["jobs"]
    async with relay.client.stream("GET", path_of("nul") + "/events") as stream:
        (message,) = await read_messages(stream)
    assert listed["error"] == orjson.loads(message["data"])["data"]["error"] == error


async def test_deep_metadata_is_400(relay: Relay) -> None:
    """A registration whose metadata nests past the bound stores nothing."""
    response = await relay.client.post(
        "/v1/jobs", json={"source": "demo", "job_id": "j", "metadata": nested(70)}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_deep"
    await assert_nothing_stored(relay)


async def test_values_stored_before_the_checks_still_read(relay: Relay) -> None:
    """A job stored with a deadline of 1e308 and a 252-deep result (as older relays took them) reads back
    through every path, and a later callback for it is still taken."""
    await relay.post_callback("demo", orjson.dumps({"id": "old", "status": "running"}))
    await store_as_older_relays_did(relay.settings.database)
    job = await read_every_way(relay, "old")
    assert job["deadline"] is None and job["result"] == nested(252)
    response = await relay.post_callback(
        "demo", orjson.dumps({"id": "old", "status": "succeeded", "output": 1})
    )
    assert response.status_code == 200 and not response.json()["duplicate"]
    assert (await read_every_way(relay, "old"))["status"] == "succeeded"


async def store_as_older_relays_did(database: str) -> None:
    """Write job `old`'s deadline and deep values into the database directly, past today's checks."""
    result = orjson.dumps(nested(252))
    event = orjson.dumps({"job_id": "old", "r": nested(252)})
    if database.startswith("sqlite:"):
        with closing(sqlite3.connect(database.removeprefix("sqlite:///"))) as db, db:
            job = db.execute("UPDATE jobs SET deadline = 1e308, result = ? WHERE job_id = 'old'", (result,))
            events = db.execute("UPDATE callbacks SET data = ? WHERE data IS NOT NULL", (event,))
            assert (job.rowcount, events.rowcount) == (1, 1)
        return
    conn = await asyncpg.connect(database)
    try:
        job = await conn.execute("UPDATE jobs SET deadline = 1e308, result = $1 WHERE job_id = 'old'", result)
        events = await conn.execute("UPDATE callbacks SET data = $1 WHERE data IS NOT NULL", event)
        assert (job, events) == ("UPDATE 1", "UPDATE 1")
    finally:
        await conn.close()


ODD_JOB_IDS = [
    "a/b",
    ".",
    "..",
    "../../v1/jobs",
    "projects/p/operations/o",
    "100%",
    "%2F",
    "with space",
    "events",
    "a/events",
    "unicodé ✓ 猫",
    "tab\tnewline\nescape\x1b[31m",
    "\x7f\x01\x1f",
]


@pytest.mark.parametrize("job_id", ODD_JOB_IDS)
async def test_any_stored_job_id_reads_back(relay: Relay, job_id: str) -> None:
    """IDs with `/`, `%`, dots, spaces, unicode and control characters, made by a registration and by a
    callback, read back through get, wait, list, events and history (percent-encoded in the path)."""
    registered = await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": job_id})
    assert registered.status_code == 201, registered.text
    assert (await read_every_way(relay, job_id))["status"] == "pending"
    response = await relay.post_callback("demo", orjson.dumps({"id": job_id, "status": "succeeded"}))
    assert response.status_code == 200 and response.json()["job_id"] == job_id
    assert (await read_every_way(relay, job_id))["status"] == "succeeded"
    ticket = registered.json()["ticket"]
    async with relay.anonymous() as browser:  # no API key: the ticket alone
        by_ticket = await browser.get(path_of(job_id), params={"ticket": ticket})
    assert by_ticket.status_code == 200 and by_ticket.json()["job_id"] == job_id


@pytest.mark.parametrize("url", ["/v1/jobs/demo/a%00b", "/v1/jobs/demo/a%00b/events", "/v1/jobs?source=%00"])
async def test_a_nul_in_a_url_is_400(relay: Relay, url: str) -> None:
    """A percent-encoded NUL in a path or a query is a 400 `bad_url`: no backend stores one (PostgreSQL's text
    cannot), so there is nothing it could name."""
    response = await relay.client.get(url)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_url"


async def test_a_path_that_is_not_utf8_is_404(relay: Relay) -> None:
    """Percent-escapes that decode to no text name no job: a 404 in the error shape, not a 500."""
    response = await relay.client.get("/v1/jobs/demo/%FF%FE")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_cli_escapes_control_characters_in_job_ids(settings_with: SettingsWith) -> None:
    """`relay deliveries list` writes a job ID's escape sequences and newlines as escapes, one line each."""
    async with (
        subscriber() as sub,
        start_relay(settings_with(allow_private_destinations=True)) as relay,
    ):
        assert (await relay.client.post("/v1/subscriptions", json={"url": sub.url})).status_code == 201
        job_id = "evil\x1b[2J\nforged\tline"
        await relay.post_callback("demo", orjson.dumps({"id": job_id, "status": "succeeded"}))
        await sub.received_at_least(1)
        api = ["--url", relay.base_url, "--api-key", relay.client.headers["authorization"].split()[1]]
        listed = await asyncio.to_thread(CliRunner().invoke, cli, ["deliveries", "list", *api])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("\n") == 1 and "\x1b" not in listed.output
    assert "demo/evil\\x1b[2J\\nforged\\tline" in listed.output


@pytest.mark.parametrize(
    ("method", "url", "body", "code"),
    [
        ("POST", "/v1/subscriptions", {"url": "https://example.com/h", "source": ["demo"]}, "unknown_source"),
        ("POST", "/v1/subscriptions", {"url": "https://example.com/h", "source": {"a": 1}}, "unknown_source"),
        ("GET", "/v1/jobs?cursor=" + "9" * 20, None, "bad_cursor"),
        ("GET", "/v1/jobs?cursor=-1", None, "bad_cursor"),
        ("GET", "/v1/jobs?cursor=5", None, "bad_cursor"),  # a bare row id: cursors are opaque
        ("GET", "/v1/jobs?cursor=%C2%B2", None, "bad_cursor"),  # a superscript two: a digit to str.isdigit
        ("GET", "/v1/jobs?limit=1e3", None, "bad_limit"),
        ("GET", "/v1/deliveries?cursor=" + "9" * 20, None, "bad_cursor"),
        ("GET", "/v1/jobs/demo/j/events?last_event_id=" + "9" * 20, None, "bad_last_event_id"),
        ("GET", "/v1/jobs/demo/j/events?last_event_id=%C2%B2", None, "bad_last_event_id"),
        ("GET", "/v1/jobs/demo/j?wait=nan", None, "bad_wait"),
        ("GET", "/v1/jobs/demo/j?wait=inf", None, "bad_wait"),
        ("POST", "/v1/jobs", {"source": ["demo"], "job_id": "j"}, "unknown_source"),
        ("POST", "/v1/jobs", {"source": "demo", "job_id": ["j"]}, "missing_job_id"),
        ("POST", "/v1/jobs", {"source": "demo", "job_id": "j" * 257}, "bad_job_id"),
        ("POST", "/v1/jobs", {"source": "demo", "job_id": "nul\x00byte"}, "bad_job_id"),  # PostgreSQL: no NUL
        ("POST", "/v1/subscriptions", {"url": "http://a..b/h"}, "unresolvable_host"),  # idna refuses it
        ("POST", "/v1/subscriptions", {"url": "http://" + "a" * 64 + ".com/"}, "unresolvable_host"),
        ("POST", "/v1/subscriptions", {"url": "http://a.com/\x00"}, "bad_url"),
        ("POST", "/v1/subscriptions", {"url": "http://a.com/ x"}, "bad_url"),
        (
            "POST",
            "/v1/jobs",
            {"source": "demo", "job_id": "j", "subscribers": ["https://e.com"] * 21},
            "bad_field",
        ),
    ],
)
async def test_bad_input_is_400_in_the_error_shape(
    relay: Relay, method: str, url: str, body: Any, code: str
) -> None:
    """Each bad value is a 400 with its code (these were 500s), and nothing is stored."""
    response = await relay.client.request(method, url, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    await assert_nothing_stored(relay)


async def test_an_unexpected_error_is_a_json_500_and_logged(
    live_relay: LiveRelay, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure nobody foresaw (here: the store raising) answers 500 in the API's error shape, on the API
    and on the callback path, and its traceback is logged (by the server, as `relay serve` runs it)."""
    relay = live_relay

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected store failure")

    monkeypatch.setattr(relay.services.store, "get_job", broken)
    monkeypatch.setattr(relay.services.store, "ingest", broken)
    with caplog.at_level(logging.ERROR):
        api = await relay.client.get("/v1/jobs/demo/j")
        hook = await relay.post_callback("demo", orjson.dumps({"id": "j", "status": "succeeded"}))
    for response in (api, hook):
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "internal"
    await wait_for(lambda: sum("injected store failure" in (r.exc_text or "") for r in caplog.records) >= 2)
