"""Property-based fuzzing of every write (and the list and read parameters) against a real relay over HTTP.

Invariants: never a 5xx; a refusal stores nothing (what the API lists is unchanged); whatever is accepted
reads back, as the same job, through get, wait, list, events and history. The relay runs in a thread of its
own (uvicorn on a loopback port), so hypothesis drives it with a plain blocking client; one relay per backend
serves a whole module.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from relay.app import create_app
from relay.models import Status
from relay.outbox_models import EVENT_TYPES
from relay.server import RelayServer
from relay.settings import Settings
from tests.conftest import API_KEY, DEMO_SECRET, free_port, make_settings, signed_headers
from tests.integration.test_hostile_input import nested, path_of
from tests.postgres import scratch_database_blocking

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # CI runs the same examples every time; a failure is reproducible from its output
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- the relay under test --------------------------------------------------------------------------------


class _SignallingServer(RelayServer):
    """Sets `ready` once it listens, or once it stopped without ever listening."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config, app)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    def run_to_end(self) -> None:
        try:
            asyncio.run(self.serve())
        finally:
            self.ready.set()


class ThreadedRelay:
    """`relay serve`'s app under uvicorn in a thread, with its loops stopped (no deliveries go out)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        app = create_app(settings, background=False)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="on")
        self.server = _SignallingServer(config, app)
        self.thread = threading.Thread(target=self.server.run_to_end, daemon=True)
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )

    def __enter__(self) -> ThreadedRelay:
        self.thread.start()
        self.server.ready.wait(timeout=30)  # bounded: the server starts within a second or two
        assert self.server.started, "relay did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def stored(self) -> tuple[list[Any], list[Any]]:
        """Every job (each with its history count: the job object's `callbacks`) and every subscription, as
        the API lists them."""
        jobs: list[Any] = []
        cursor: dict[str, str] = {}
        while True:
            page = self.client.get("/v1/jobs", params={"limit": 500, **cursor}).json()
            jobs += page["jobs"]
            if page["next_cursor"] is None:
                break
            cursor = {"cursor": page["next_cursor"]}
        return jobs, self.client.get("/v1/subscriptions").json()["subscriptions"]


@contextmanager
def module_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database of `backend` for a whole module: a file in tmp_path, or a copy of the template."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    with scratch_database_blocking(request.getfixturevalue("postgres_template")) as url:
        yield url


@pytest.fixture(scope="module")
def relay(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ThreadedRelay]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    with module_database(backend, tmp_path, request) as database:
        # Waits are capped short, so a fuzzed `?wait=` on a job that never finishes costs milliseconds.
        with ThreadedRelay(make_settings(tmp_path, database=database, max_wait_s=0.05)) as live:
            yield live


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:  # every refusal is in the API's error shape
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


def assert_reads_back(relay: ThreadedRelay, job_id: str) -> None:
    """The job answers, as itself, through every read path."""
    client = relay.client
    got = client.get(path_of(job_id))
    assert got.status_code == 200, got.text[:500]
    job = got.json()
    assert job["job_id"] == job_id
    assert client.get(path_of(job_id), params={"wait": "0.001"}).json()["job_id"] == job_id
    listed = client.get("/v1/jobs", params={"source": "demo", "limit": 500})
    assert listed.status_code == 200 and job_id in [j["job_id"] for j in listed.json()["jobs"]]
    history = client.get(path_of(job_id) + "/callbacks")
    assert history.status_code == 200, history.text[:500]
    with client.stream("GET", path_of(job_id) + "/events") as stream:
        assert stream.status_code == 200
        if Status(job["status"]).final:  # the stream sends the events and closes
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
            assert all(orjson.loads(line[6:])["data"]["job_id"] == job_id for line in events)


# --- what the fuzzer sends -------------------------------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


# Around the depth bound (64 for a body; the value sits one level in), as well as far past it.
deep_values = st.integers(min_value=55, max_value=120).map(nested)
numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([1e308, 3e11, 2.0**70, 0, -1, 0.001, 366 * 86_400, 366 * 86_400 + 1])
)
odd_text = st.text(max_size=40) | st.sampled_from(
    ["a/b", ".", "..", "%2F", "a%", "events", "x\x00y", "\x1b[2J"]
)
job_ids = odd_text | st.text(min_size=250, max_size=270) | json_values
status_words = (
    st.sampled_from(["succeeded", "failed", "processing", "canceled", "done", "SUCCEEDED"]) | odd_text
)
# IP literals only: a host name would send the subscription check to a resolver this machine cannot reach.
urls = (
    st.sampled_from(
        [
            "http://127.0.0.1/h",
            "https://[::1]/h",
            "http://[::127.0.0.1]/h",
            "http://10.0.0.1/",
            "http://169.254.169.254/",
        ]
    )
    | st.text(max_size=30)
    | json_values
)


def unique(job_id: Any) -> Any:
    """A string ID made unique to this example (the fuzzed text kept whole), so reads find its own job."""
    return f"{uuid.uuid4().hex[:8]}{job_id}" if isinstance(job_id, str) else job_id


# --- the properties --------------------------------------------------------------------------------------


@FUZZ
@given(
    job_id=job_ids,
    status=status_words,
    payload=json_values | deep_values,
    extra=st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    skew=st.sampled_from([0, 0, 0, -400, 400, 10**10]),
    tamper=st.booleans() | st.none(),
)
def test_fuzzed_callbacks(
    relay: ThreadedRelay,
    job_id: Any,
    status: Any,
    payload: Any,
    extra: dict[str, Any],
    skew: int,
    tamper: Any,
) -> None:
    """Signed (or tampered) callbacks with fuzzed IDs, statuses, payloads and timestamps: never a 5xx,
    nothing stored on a refusal, and an accepted one reads back every way."""
    doc = {**extra, "id": unique(job_id), "status": status, "output": payload}
    try:
        body = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # deeper than any JSON writer here goes: send it as text
        body = b'{"id": "x", "status": "succeeded", "output": ' + b"[" * 300 + b"]" * 300 + b"}"
    headers = signed_headers(DEMO_SECRET, body, timestamp=None if not skew else time.time() + skew)
    if tamper:
        body += b" "
    elif tamper is None:
        headers.pop("webhook-signature")
    before = relay.stored()
    response = relay.client.post("/hooks/demo", content=body, headers=headers)
    assert_no_server_error(response)
    if response.status_code == 200:
        assert_reads_back(relay, response.json()["job_id"])
    else:
        assert relay.stored() == before


@FUZZ
@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(
            ["webhook-id", "webhook-timestamp", "webhook-signature", "content-length", "content-type"]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    ),
)
def test_fuzzed_raw_callbacks(relay: ThreadedRelay, body: bytes, headers: dict[str, str]) -> None:
    """Arbitrary bytes and header values on the hook: refused without a 5xx, nothing stored."""
    before = relay.stored()
    headers.pop("content-length", None)  # a wrong length is the HTTP client's refusal, not the relay's
    headers = {name: value.strip() for name, value in headers.items()}  # nor may a value start with a space
    response = relay.client.post("/hooks/demo", content=body, headers=headers)
    assert_no_server_error(response)
    assert response.status_code != 200 and relay.stored() == before


@FUZZ
@given(
    source=st.sampled_from(["demo", "demo", "replicate"]) | json_values,
    job_id=job_ids,
    timeout_s=numbers | json_values | st.none(),
    metadata=json_values
    | deep_values
    | st.dictionaries(st.text(max_size=8), json_values | deep_values, max_size=3),
    subscribers=st.none() | st.lists(urls, max_size=3) | json_values,
    unknown=st.none() | st.text(min_size=1, max_size=5),
)
def test_fuzzed_registrations(
    relay: ThreadedRelay,
    source: Any,
    job_id: Any,
    timeout_s: Any,
    metadata: Any,
    subscribers: Any,
    unknown: Any,
) -> None:
    """Fuzzed registrations: never a 5xx, nothing stored on a refusal, and a registered job reads back."""
    doc: dict[str, Any] = {"source": source, "job_id": unique(job_id)}
    for key, value in (("timeout_s", timeout_s), ("metadata", metadata), ("subscribers", subscribers)):
        if value is not None:
            doc[key] = value
    if unknown:
        doc[unknown] = 1
    before = relay.stored()
    response = relay.client.post("/v1/jobs", content=orjson.dumps(doc))
    assert_no_server_error(response)
    if response.status_code in (200, 201):
        job = response.json()
        assert job["source"] == "demo" or source == "replicate"
        if job["source"] == "demo":
            assert job["job_id"] == doc["job_id"] or not isinstance(doc["job_id"], str), (job, doc)
            assert_reads_back(relay, job["job_id"])
    else:
        assert relay.stored() == before


@FUZZ
@given(
    url=urls,
    source=st.none() | st.sampled_from(["demo"]) | json_values,
    events=st.none() | st.lists(st.sampled_from(sorted(EVENT_TYPES)) | odd_text, max_size=3) | json_values,
)
def test_fuzzed_subscriptions(relay: ThreadedRelay, url: Any, source: Any, events: Any) -> None:
    """Fuzzed subscriptions: never a 5xx; private or malformed destinations are refused, storing nothing."""
    doc = {
        "url": url,
        **({} if source is None else {"source": source}),
        **({} if events is None else {"events": events}),
    }
    before = relay.stored()
    response = relay.client.post("/v1/subscriptions", content=orjson.dumps(doc))
    assert_no_server_error(response)
    if response.status_code == 201:
        sub = response.json()
        assert relay.client.get(f"/v1/subscriptions/{sub['id']}").json()["url"] == url
        assert relay.client.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
    else:
        assert response.status_code == 400 and relay.stored() == before


query_text = st.text(max_size=25) | st.integers(min_value=-(10**25), max_value=10**25).map(str)


@FUZZ
@given(
    path=st.sampled_from(["/v1/jobs", "/v1/deliveries"]),
    params=st.dictionaries(
        st.sampled_from(["cursor", "limit", "status", "source", "job_id", "subscription_id"]),
        query_text,
        max_size=4,
    ),
)
def test_fuzzed_list_parameters(relay: ThreadedRelay, path: str, params: dict[str, str]) -> None:
    """Fuzzed list filters and cursors: a page or a 400, never a 5xx."""
    response = relay.client.get(path, params=params)
    assert_no_server_error(response)
    assert response.status_code in (200, 400)


@FUZZ
@given(
    job_id=odd_text,
    wait=query_text,
    last_event_id=query_text,
    authorization=st.none()
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
def test_fuzzed_reads(
    relay: ThreadedRelay, job_id: str, wait: str, last_event_id: str, authorization: str | None
) -> None:
    """Fuzzed job paths, waits, Last-Event-IDs and credentials on the reads: never a 5xx."""
    headers = (
        {} if authorization is None else {"authorization": authorization.strip()}
    )  # h11 sends no padding
    got = relay.client.get(path_of(job_id), params={"wait": wait}, headers=headers)
    assert_no_server_error(got)
    with relay.client.stream(
        "GET", path_of(job_id) + "/events", params={"last_event_id": last_event_id}, headers=headers
    ) as stream:
        assert stream.status_code < 500
    assert_no_server_error(relay.client.get(path_of(job_id) + "/callbacks", headers=headers))
