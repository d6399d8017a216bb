"""A first end-to-end pass through the relay."""

import asyncio

import orjson

from tests.conftest import Relay, wait_for


async def test_final_callback_wakes_a_waiter(relay: Relay) -> None:
    """A long-poll on an unknown job returns the final result the moment its callback commits."""
    waiter = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 10}))
    await wait_for(lambda: relay.services.hub.count == 1)
    body = orjson.dumps({"id": "j1", "status": "succeeded", "output": [1]})
    response = await relay.post_callback("demo", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": True, "source": "demo", "job_id": "j1", "duplicate": False}
    answer = await waiter
    assert answer.status_code == 200
    assert answer.json()["status"] == "succeeded"


async def test_the_relay_runs_on_the_backend_its_id_names(relay: Relay, backend: str) -> None:
    """`test_x[postgres]` runs on PostgreSQL, `test_x[sqlite]` on SQLite: each variant tests what it names."""
    store = type(relay.services.store).__name__
    assert store == {"sqlite": "SQLiteStore", "postgres": "PostgresStore"}[backend]
