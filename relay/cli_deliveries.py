"""`relay deliveries list|retry`: deliveries to subscribers, asked of the running relay through relay.client.
A failure is one line on stderr and exit status 1 (a config that cannot load: 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from relay.cli_common import answering, api_options, relay_client, shown

__all__ = ["deliveries"]


_with_api_options = api_options(ticket=False)


@click.group()
def deliveries() -> None:
    """List and resend deliveries to subscribers (asks the running relay)."""


@deliveries.command("list")
@_with_api_options
@click.option("--status", default=None, help="pending, delivering, retrying, delivered or dead.")
@click.option("--source", default=None)
@click.option("--job-id", default=None)
@click.option("--subscription", "subscription_id", default=None, help="A subscription id (sub_...).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", default=None, help="next_cursor from an earlier page.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
def deliveries_list(
    config: Path | None, url: str | None, api_key: str | None, as_json: bool, **filters: Any
) -> None:
    """Deliveries newest first: id, status, event, job, attempts, last answer, URL."""
    params = {k: v for k, v in filters.items() if v is not None}
    with answering(relay_client(config, url, api_key)) as client:
        page = client.deliveries_page(**params)
    if not page["deliveries"]:
        click.echo(_none_listed(params), err=True)  # stderr: stdout stays the rows, or valid JSON
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for d in page["deliveries"]:
        last = d["last_status_code"] or d["last_error"] or "-"
        click.echo(
            f"{d['id']}\t{d['status']}\t{d['event_type']}\t{shown(d['source'])}/{shown(d['job_id'])}\t"
            f"attempts={d['attempt_count']}\tlast={shown(str(last))}\t{shown(d['url'])}"
        )
    if page["next_cursor"]:
        click.echo(f"(more: --cursor {page['next_cursor']})", err=True)


def _none_listed(params: dict[str, Any]) -> str:
    """What an empty page says: no deliveries (matching the filters), or none after the cursor."""
    if params.get("cursor"):
        return "no more deliveries"
    filters = ", ".join(f"{k}={shown(str(v))}" for k, v in params.items() if k != "limit")
    return f"no deliveries matching {filters}" if filters else "no deliveries"


@deliveries.command("retry")
@_with_api_options
@click.argument("ids", nargs=-1, required=True)
def deliveries_retry(config: Path | None, url: str | None, api_key: str | None, ids: tuple[str, ...]) -> None:
    """Send deliveries IDS (dlv_...) again now, with the same webhook-id and a fresh retry schedule."""
    with answering(relay_client(config, url, api_key)) as client:
        for delivery_id in ids:
            d = client.retry_delivery(delivery_id)
            click.echo(
                f"{d.id}\t{d.status}\t{d.event_type}\t{shown(d.source)}/{shown(d.job_id)}\t{shown(d.url)}"
            )
