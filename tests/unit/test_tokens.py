"""Signed tokens: per-job read tickets and the URL tokens of unsigned providers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.tokens import Tokens

tokens = Tokens("secret-key-one")
other = Tokens("secret-key-two")


@settings(max_examples=200, deadline=None)
@given(source=st.text(max_size=40), job_id=st.text(max_size=80))
def test_ticket_round_trips(source: str, job_id: str) -> None:
    """A ticket names exactly the job it was made for."""
    assert tokens.ticket_job(tokens.ticket(source, job_id)) == (source, job_id)


def test_ticket_is_url_safe() -> None:
    """Tickets travel in `?ticket=`, so they use URL-safe characters only."""
    ticket = tokens.ticket("replicate", "a/b c?d&e=f")
    assert set(ticket) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_a_ticket_for_one_job_is_not_another_jobs() -> None:
    """Tickets differ per job and per source, and each reads only its own job."""
    ticket = tokens.ticket("replicate", "abc")
    assert tokens.ticket("replicate", "abd") != ticket
    assert tokens.ticket("demo", "abc") != ticket
    assert tokens.ticket_job(ticket) == ("replicate", "abc")


def test_hook_token_validates_only_its_source() -> None:
    """A hook token authenticates its own source and no other."""
    token = tokens.hook_token("runpod")
    assert tokens.hook_token_valid("runpod", token)
    assert not tokens.hook_token_valid("runpod2", token)
    assert not tokens.hook_token_valid("demo", token)


def test_tickets_and_hook_tokens_are_not_interchangeable() -> None:
    """Different salts: a ticket is not a hook token, and a hook token is not a ticket."""
    ticket = tokens.ticket("runpod", "job")
    assert not tokens.hook_token_valid("runpod", ticket)
    hook_token = tokens.hook_token("runpod")
    assert tokens.ticket_job(hook_token) is None
    # A two-letter source's token payload would unpack as a (source, job_id) pair: only the salt refuses it.
    assert tokens.ticket_job(tokens.hook_token("ab")) is None


def test_another_secret_key_refuses_them() -> None:
    """Tokens made with another secret_key are refused."""
    assert other.ticket_job(tokens.ticket("replicate", "abc")) is None
    assert not other.hook_token_valid("runpod", tokens.hook_token("runpod"))
    assert Tokens("secret-key-one").ticket_job(tokens.ticket("replicate", "abc")) == ("replicate", "abc")


def _tamperings(token: str) -> list[str]:
    payload, _, signature = token.rpartition(".")
    flip = {"A": "B"}.get(signature[-1], "A")
    return [
        token[:-1] + flip,  # signature changed
        ("X" if payload[0] != "X" else "Y") + token[1:],  # payload changed
        payload,  # signature dropped
        token + "A",
        "." + token,
        "",
    ]


@pytest.mark.parametrize("index", range(6))
def test_tampered_tokens_are_refused(index: int) -> None:
    """A ticket or hook token changed anywhere is refused, without raising."""
    ticket = _tamperings(tokens.ticket("replicate", "abc"))[index]
    assert tokens.ticket_job(ticket) is None
    hook_token = _tamperings(tokens.hook_token("runpod"))[index]
    assert not tokens.hook_token_valid("runpod", hook_token)


@settings(max_examples=200, deadline=None)
@given(garbage=st.text(max_size=120))
def test_garbage_is_refused_without_raising(garbage: str) -> None:
    """Any string is answered None/False, never an exception (it comes straight from a URL)."""
    assert tokens.ticket_job(garbage) is None
    assert tokens.hook_token_valid("runpod", garbage) is False
