"""Jobs through the API: registration, auth and tickets, listing."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.conftest import Relay


async def register(relay: Relay, **fields: object) -> httpx.Response:
    return await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j1", **fields})


async def test_register_then_merge(relay: Relay) -> None:
    """201 with a ticket and the webhook URL when new; 200 and merged fields when it existed."""
    first = await register(relay, timeout_s=60, metadata={"user": "u1"})
    assert first.status_code == 201
    job = first.json()
    assert job["status"] == "pending" and job["metadata"] == {"user": "u1"}
    assert job["webhook_url"] == f"{relay.settings.base_url}/hooks/demo"
    assert job["ticket"]
    second = await register(relay, metadata={"prompt": "cat"})
    assert second.status_code == 200
    assert second.json()["metadata"] == {"user": "u1", "prompt": "cat"}


async def test_registration_after_the_callback_keeps_the_result(relay: Relay) -> None:
    """A callback may arrive before the registration: the registration merges into the finished job."""
    await relay.post_callback("demo", orjson.dumps({"id": "j1", "status": "succeeded", "output": 7}))
    response = await register(relay, metadata={"late": "registration"})
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded" and response.json()["result"]["output"] == 7


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"source": "nope"}, "unknown_source"),
        ({"job_id": ""}, "bad_job_id"),
        ({"timeout_s": -1}, "bad_field"),
        ({"timeout_s": "soon"}, "bad_field"),
        ({"subscribers": ["ftp://x"]}, "bad_field"),
        ({"metadata": [1]}, "bad_field"),
        ({"colour": "red"}, "bad_field"),
    ],
)
async def test_bad_registrations_are_400(relay: Relay, fields: dict[str, object], code: str) -> None:
    """Each bad registration field is a 400 naming the problem, and nothing is stored."""
    response = await register(relay, **fields)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert await relay.services.store.count_jobs_by_status() == {}


async def test_registration_body_must_be_json(relay: Relay) -> None:
    """A registration that is not JSON is 400 malformed_json."""
    response = await relay.client.post("/v1/jobs", content=b"source=demo")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"


async def test_api_key_is_required(relay: Relay) -> None:
    """No key, a wrong key or a wrong scheme: 401; nothing is registered."""
    async with relay.anonymous() as anonymous:
        none = await anonymous.post("/v1/jobs", json={"source": "demo", "job_id": "j1"})
        wrong = await anonymous.get("/v1/jobs", headers={"authorization": "Bearer nope"})
        basic = await anonymous.get("/v1/jobs/demo/j1", headers={"authorization": "Basic abc"})
    assert none.status_code == 401 and none.json()["error"]["code"] == "missing_api_key"
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_api_key"
    assert basic.status_code == 401 and basic.json()["error"]["code"] == "bad_api_key"
    assert await relay.services.store.get_job("demo", "j1") is None


async def test_ticket_reads_its_own_job_only(relay: Relay) -> None:
    """A ticket reads its job; another job, a list, a tampered ticket or a write are refused."""
    ticket = (await register(relay)).json()["ticket"]
    await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": "j2"})
    async with relay.anonymous() as anonymous:
        own = await anonymous.get("/v1/jobs/demo/j1", params={"ticket": ticket})
        other = await anonymous.get("/v1/jobs/demo/j2", params={"ticket": ticket})
        listing = await anonymous.get("/v1/jobs", params={"ticket": ticket})
        tampered = await anonymous.get("/v1/jobs/demo/j1", params={"ticket": ticket[:-2] + "xx"})
        write = await anonymous.post(
            "/v1/jobs", params={"ticket": ticket}, json={"source": "demo", "job_id": "j1"}
        )
    assert own.status_code == 200 and own.json()["job_id"] == "j1"
    assert other.status_code == 403 and other.json()["error"]["code"] == "ticket_scope"
    assert listing.status_code == 403 and listing.json()["error"]["code"] == "ticket_scope"
    assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "bad_ticket"
    assert write.status_code == 403


async def test_unknown_job_is_404(relay: Relay) -> None:
    """Reading a job nobody registered or called back is 404 unknown_job."""
    response = await relay.client.get("/v1/jobs/demo/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_job"


async def test_list_pages_with_cursor_and_filters(relay: Relay) -> None:
    """GET /v1/jobs pages newest first via next_cursor and filters by source and status."""
    for i in range(5):
        await relay.client.post("/v1/jobs", json={"source": "demo", "job_id": f"j{i}"})
    await relay.post_callback("demo", orjson.dumps({"id": "j1", "status": "succeeded"}))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await relay.client.get("/v1/jobs", params=params)).json()
        seen += [job["job_id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["j4", "j3", "j2", "j1", "j0"]
    done = (await relay.client.get("/v1/jobs", params={"status": "succeeded", "source": "demo"})).json()
    assert [job["job_id"] for job in done["jobs"]] == ["j1"] and done["next_cursor"] is None
    other = (await relay.client.get("/v1/jobs", params={"source": "replicate"})).json()
    assert other == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "bad_limit"),
        ({"limit": 501}, "bad_limit"),
        ({"cursor": "abc"}, "bad_cursor"),
        ({"status": "done"}, "bad_status"),
    ],
)
async def test_bad_list_parameters_are_400(relay: Relay, params: dict[str, str | int], code: str) -> None:
    """Out-of-range limits, foreign cursors and unknown statuses are 400."""
    response = await relay.client.get("/v1/jobs", params=params)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


async def test_source_endpoint_gives_the_webhook_url(relay: Relay) -> None:
    """GET /v1/sources/NAME answers the kind and the URL to give the provider."""
    response = await relay.client.get("/v1/sources/replicate")
    assert response.json()["kind"] == "replicate"
    assert response.json()["webhook_url"] == f"{relay.settings.base_url}/hooks/replicate"
    assert (await relay.client.get("/v1/sources/nope")).status_code == 404


async def test_healthz(relay: Relay) -> None:
    """/healthz answers 200 while the database answers."""
    response = await relay.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
