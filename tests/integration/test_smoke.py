"""A first end-to-end pass through the live relay."""

import orjson

from tests.conftest import LiveRelay


async def test_final_callback_wakes_a_waiter(relay: LiveRelay) -> None:
    """A long-poll on an unknown job returns the final result the moment its callback commits."""
    import asyncio

    waiter = asyncio.create_task(relay.client.get("/v1/jobs/demo/j1", params={"wait": 10}))
    await asyncio.sleep(0)
    body = orjson.dumps({"id": "j1", "status": "succeeded", "output": [1]})
    response = await relay.post_callback("demo", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": True, "source": "demo", "job_id": "j1", "duplicate": False}
    answer = await waiter
    assert answer.status_code == 200
    assert answer.json()["status"] == "succeeded"
