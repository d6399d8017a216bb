"""Command-line flags and RELAY_* environment variables take effect in a real `relay serve`."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson

from relay.tokens import Tokens
from tests.conftest import API_KEY, DEMO_SECRET, free_port, signed_headers
from tests.e2e.conftest import SECRET_KEY, RelayProcess, clean_env, write_config


def _stored_job_ids(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {row[0] for row in conn.execute("SELECT job_id FROM jobs")}


async def _post(process: RelayProcess, job_id: str) -> httpx.Response:
    body = orjson.dumps({"id": job_id, "status": "succeeded"})
    async with process.client(None) as client:
        return await client.post("/hooks/demo", content=body, headers=signed_headers(DEMO_SECRET, body))


async def test_relay_config_names_the_file_and_its_host_and_port(tmp_path: Path, spawn: Any) -> None:
    """RELAY_CONFIG alone: the named file's port and keys are used and no relay.toml is written."""
    port = free_port()
    config = write_config(tmp_path / "conf" / "custom.toml", port=port)
    process: RelayProcess = spawn(env=clean_env(RELAY_CONFIG=str(config)), port=port)
    await process.ready()
    assert not (tmp_path / "relay.toml").exists()
    assert "First start" not in process.stderr
    async with process.client() as client:
        assert (await client.get("/v1/jobs")).status_code == 200


async def test_flags_override_the_files_host_and_port(tmp_path: Path, spawn: Any) -> None:
    """--host and --port win over the file's host and port."""
    config = write_config(tmp_path / "relay.toml", host="127.0.0.2", port=free_port())
    process: RelayProcess = spawn("--config", str(config), "--host", "127.0.0.1")  # spawn adds --port
    await process.ready()
    assert f"Uvicorn running on http://127.0.0.1:{process.port}" in process.stderr
    assert (await _post(process, "on-the-flag-port")).status_code == 200


async def test_environment_overrides_the_file(tmp_path: Path, spawn: Any) -> None:
    """RELAY_DATABASE_URL, RELAY_API_KEYS and RELAY_SECRET_KEY win over the file's database, keys, secret."""
    config = write_config(tmp_path / "relay.toml")
    env_database = tmp_path / "from-env" / "relay.db"
    env_database.parent.mkdir()
    env = clean_env(
        RELAY_DATABASE_URL=f"sqlite:///{env_database}",
        RELAY_API_KEYS=" env-key-1, env-key-2 ",
        RELAY_SECRET_KEY="env-secret-key",
    )
    process: RelayProcess = spawn("--config", str(config), env=env)
    await process.ready()

    assert (await _post(process, "env-db-job")).status_code == 200
    assert _stored_job_ids(env_database) == {"env-db-job"}
    assert not (tmp_path / "relay.db").exists()

    for key, expected in (("env-key-1", 200), ("env-key-2", 200), (API_KEY, 401)):
        async with process.client(key) as client:
            assert (await client.get("/v1/jobs/demo/env-db-job")).status_code == expected, key

    # Tickets are signed with the secret key: one made with the environment's key reads the job.
    async with process.client(None) as client:
        for secret_key, expected in (("env-secret-key", 200), (SECRET_KEY, 401)):
            ticket = Tokens(secret_key).ticket("demo", "env-db-job")
            answer = await client.get("/v1/jobs/demo/env-db-job", params={"ticket": ticket})
            assert answer.status_code == expected, secret_key
