"""The config file written on relay's first start: fresh keys and a demo source."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from relay import signing

__all__ = ["write_first_run_config"]


def write_first_run_config(path: Path, host: str | None = None, port: int | None = None) -> dict[str, str]:
    """Create a config with a fresh secret key, API key and demo source; answer what to show the user once.

    A `--host`/`--port` given on that first start is kept too, so later commands print the same URLs.
    """
    created = {
        "secret_key": secrets.token_urlsafe(32),
        "api_key": "rk_" + secrets.token_urlsafe(24),
        "demo_secret": signing.new_secret(),
        "signing_secret": signing.new_secret(),
    }
    text = (
        "# Written by relay on first start. Edit freely; see the README for every key.\n"
        f"secret_key = {json.dumps(created['secret_key'])}\n"
        f"api_keys = [{json.dumps(created['api_key'])}]\n"
        f"signing_secret = {json.dumps(created['signing_secret'])}  # signs per-job deliveries\n"
        + (f"host = {json.dumps(host)}\n" if host is not None else "")
        + (f"port = {port}\n" if port is not None else "")
        + "\n"
        "[sources.demo]\n"
        'kind = "standard-webhooks"\n'
        f"secret = {json.dumps(created['demo_secret'])}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return created
