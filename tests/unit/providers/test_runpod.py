"""runpod and unsigned: nothing signed, the URL token authenticates; RunPod's job envelope and statuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from relay.errors import BadRequest, ConfigError
from relay.models import Status
from relay.tokens import Tokens
from tests.unit.providers.support import provider, source

JOB_ID = "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1"


def job(status: str, **fields: Any) -> bytes:
    """RunPod's webhook body: the job envelope of /status."""
    return orjson.dumps({"id": JOB_ID, "status": status, "delayTime": 824, "executionTime": 2170, **fields})


@pytest.mark.parametrize(
    ("status", "fields", "expected", "error"),
    [
        ("IN_QUEUE", {}, Status.RUNNING, None),
        ("IN_PROGRESS", {}, Status.RUNNING, None),
        ("COMPLETED", {"output": {"image_url": "https://x/y.png"}}, Status.SUCCEEDED, None),
        ("FAILED", {"error": "handler raised ValueError"}, Status.FAILED, "handler raised ValueError"),
        ("CANCELLED", {}, Status.CANCELED, None),
        ("TIMED_OUT", {}, Status.FAILED, "TIMED_OUT"),
    ],
)
def test_job_statuses(status: str, fields: dict[str, Any], expected: Status, error: str | None) -> None:
    """Each RunPod status maps; output is the result, error the error; the dedupe key is id + status."""
    callback = provider("runpod").parse({}, job(status, **fields))
    assert (callback.job_id, callback.status, callback.error) == (JOB_ID, expected, error)
    assert callback.result == fields.get("output") and callback.delivery_id == f"{JOB_ID}:{status}"


async def test_verify_has_nothing_to_check() -> None:
    """The request itself carries no proof; verify accepts (the URL token was checked before)."""
    source_ = provider("runpod")
    assert source_.signed is False
    await source_.verify({}, job("COMPLETED"), 0.0)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"status": "COMPLETED"}', "missing_job_id"),
        (job("EXPLODED"), "unknown_status"),
        (b"{", "malformed_json"),
    ],
)
def test_unusable_bodies_are_400(body: bytes, code: str) -> None:
    """No id, an unknown status or bad JSON: 400 naming it."""
    with pytest.raises(BadRequest) as err:
        provider("runpod").parse({}, body)
    assert err.value.code == code


def test_token_version_changes_the_token() -> None:
    """Without token_version the token signs the name; each version signs another subject: old URLs fail."""
    tokens = Tokens("k")
    plain, v2, v3 = (
        source("runpod", name="rp", **t) for t in ({}, {"token_version": 2}, {"token_version": "3"})
    )
    assert plain.hook_token_subject == "rp" and v2.hook_token_subject == "rp#2"
    assert tokens.hook_token_valid(v2.hook_token_subject, tokens.hook_token(v2.hook_token_subject))
    assert not tokens.hook_token_valid(v2.hook_token_subject, tokens.hook_token(plain.hook_token_subject))
    assert not tokens.hook_token_valid(v3.hook_token_subject, tokens.hook_token(v2.hook_token_subject))


@pytest.mark.parametrize("version", [True, 1.5, [1]])
def test_bad_token_version_is_a_config_error(version: object) -> None:
    """token_version must be a string or an integer."""
    with pytest.raises(ConfigError, match=r"sources\.src\.token_version"):
        provider("runpod", token_version=version)


def test_unsigned_kind_reads_a_luma_generation() -> None:
    """`unsigned` with pointers and a status_map reads Luma's generation (state dreaming -> running)."""
    luma = provider(
        "unsigned",
        status_pointer="/state",
        error_pointer="/failure_reason",
        status_map={"dreaming": "running"},
    )
    body = {"id": "gen_1", "state": "dreaming", "assets": None, "failure_reason": None}
    callback = luma.parse({}, orjson.dumps(body))
    assert (callback.job_id, callback.status, callback.delivery_id) == (
        "gen_1",
        Status.RUNNING,
        "gen_1:dreaming",
    )
    done = luma.parse({}, orjson.dumps({**body, "state": "completed", "assets": {"video": "https://v"}}))
    assert done.status == Status.SUCCEEDED and done.result["assets"] == {"video": "https://v"}


def test_unsigned_kind_reads_a_krea_job() -> None:
    """`unsigned` with job_id_pointer /job_id reads a Krea job; the dedupe key escapes the job ID."""
    krea = provider("unsigned", job_id_pointer="/job_id", result_pointer="/result")
    callback = krea.parse({}, b'{"job_id": "a:b/c", "status": "cancelled", "result": null}')
    assert callback.status == Status.CANCELED and callback.delivery_id == "a%3Ab%2Fc:cancelled"
