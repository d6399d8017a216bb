"""`relay jobs ...`: the jobs API from a shell, through relay.client. JSON on stdout (one object; `events` one
per line), messages on stderr. `wait` exits 0 when the job succeeded, 1 when it ended otherwise, 3 when it
was still not final at `--timeout`; every command exits 2 on a usage, connection or API error."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import click

from relay.cli_common import answering, api_options, relay_client
from relay.client import Client, WaitTimeout

__all__ = ["EXIT_FAILED", "EXIT_SUCCEEDED", "EXIT_USAGE", "EXIT_WAIT_TIMEOUT", "jobs"]

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1  # the job ended failed, canceled or timed_out
EXIT_USAGE = 2  # click's own status for usage errors; connection and API errors join it
EXIT_WAIT_TIMEOUT = 3

F = TypeVar("F", bound=Callable[..., Any])


class JobsError(click.ClickException):
    """A failure of a jobs command: its message on stderr, exit status 2."""

    exit_code = EXIT_USAGE


_api_options = api_options(ticket=True)


def _client(config: Path | None, url: str | None, api_key: str | None, ticket: str | None) -> Client:
    """A client for the running relay: the options (or RELAY_URL/RELAY_API_KEY), else the config's address
    and first API key, as `relay deliveries` finds them."""
    key_options = "--api-key (or RELAY_API_KEY)"
    return relay_client(config, url, api_key, ticket, key_options=key_options, failure=JobsError)


def _answering(client: Client) -> AbstractContextManager[Client]:
    """Close the client, and turn what relay refused (or no answer) into one line on stderr and status 2."""
    return answering(client, JobsError)


def _print(doc: Any, one_line: bool = False) -> None:
    click.echo(
        json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if one_line else json.dumps(doc, indent=2)
    )


@click.group()
def jobs() -> None:
    """Register, read, wait for, list, follow and cancel jobs (asks the running relay)."""


@jobs.command()
@_api_options
@click.argument("source")
@click.argument("job_id")
@click.option("--timeout-s", type=float, default=None, help="Deadline of the job, in seconds from now.")
@click.option("--metadata", default=None, help="A JSON object merged into the job's metadata.")
@click.option("--subscriber", "subscribers", multiple=True, help="A URL that gets the job's final event.")
def register(
    config: Path | None,
    url: str | None,
    api_key: str | None,
    ticket: str | None,
    source: str,
    job_id: str,
    timeout_s: float | None,
    metadata: str | None,
    subscribers: tuple[str, ...],
) -> None:
    """Register job JOB_ID of SOURCE; prints the job with its ticket and webhook_url."""
    meta = _metadata(metadata)
    with _answering(_client(config, url, api_key, ticket)) as client:
        job = client.register(source, job_id, timeout_s=timeout_s, subscribers=subscribers, metadata=meta)
    _print(job.to_dict())


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(doc, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    return doc


@jobs.command()
@_api_options
@click.argument("source")
@click.argument("job_id")
def get(
    config: Path | None, url: str | None, api_key: str | None, ticket: str | None, source: str, job_id: str
) -> None:
    """Print job JOB_ID of SOURCE as it is now."""
    with _answering(_client(config, url, api_key, ticket)) as client:
        job = client.get(source, job_id)
    _print(job.to_dict())


@jobs.command()
@_api_options
@click.argument("source")
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (default: never).")
@click.pass_context
def wait(
    ctx: click.Context,
    config: Path | None,
    url: str | None,
    api_key: str | None,
    ticket: str | None,
    source: str,
    job_id: str,
    timeout: float | None,
) -> None:
    """Wait until job JOB_ID of SOURCE is final and print it: exit 0 if it succeeded, 1 if it failed, was
    canceled or timed out, 3 if it is still not final at --timeout."""
    try:
        with _answering(_client(config, url, api_key, ticket)) as client:
            job = client.wait(source, job_id, timeout=timeout)
    except WaitTimeout as exc:
        if exc.job is not None:
            _print(exc.job.to_dict())
        click.echo(f"relay: {exc.message}", err=True)
        ctx.exit(EXIT_WAIT_TIMEOUT)
    _print(job.to_dict())
    ctx.exit(EXIT_SUCCEEDED if job.status == "succeeded" else EXIT_FAILED)


@jobs.command("list")
@_api_options
@click.option("--source", default=None)
@click.option("--status", default=None, help="pending, running, succeeded, failed, canceled or timed_out.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="0: every job.")
def list_jobs(
    config: Path | None,
    url: str | None,
    api_key: str | None,
    ticket: str | None,
    source: str | None,
    status: str | None,
    limit: int,
) -> None:
    """Print jobs newest first as {"jobs": [...]}, page after page up to --limit."""
    with _answering(_client(config, url, api_key, ticket)) as client:
        page_size = min(limit, 500) if limit else 500
        found = client.jobs(source=source, status=status, page_size=page_size)
        listed = [job.to_dict() for job in (islice(found, limit) if limit else found)]
    _print({"jobs": listed})


@jobs.command()
@_api_options
@click.argument("source")
@click.argument("job_id")
@click.option("--last-event-id", type=click.IntRange(min=0), default=None, help="Start after this event.")
def events(
    config: Path | None,
    url: str | None,
    api_key: str | None,
    ticket: str | None,
    source: str,
    job_id: str,
    last_event_id: int | None,
) -> None:
    """Print the job's events as they come, one JSON object per line, until it is final."""
    with _answering(_client(config, url, api_key, ticket)) as client:
        for event in client.events(source, job_id, last_event_id=last_event_id):
            _print(event.to_dict(), one_line=True)


@jobs.command()
@_api_options
@click.argument("source")
@click.argument("job_id")
def cancel(
    config: Path | None, url: str | None, api_key: str | None, ticket: str | None, source: str, job_id: str
) -> None:
    """Ask the provider to cancel job JOB_ID of SOURCE; prints the job."""
    with _answering(_client(config, url, api_key, ticket)) as client:
        job = client.cancel(source, job_id)
    _print(job.to_dict())
