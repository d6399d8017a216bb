"""End-to-end fixtures: `relay serve` as a real subprocess on a free loopback port, killed at teardown."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, DEMO_SECRET, REPLICATE_SECRET, free_port, wait_for

READY_WITHIN_S = 20.0
# After a graceful stop uvicorn (>= 0.29) re-raises the signal it handled, so the process ends "killed by
# SIGTERM" (shell status 143), which process managers count as a clean stop; 0 is accepted too.
CLEAN_STOP = (0, -signal.SIGTERM)
SECRET_KEY = "e2e-secret-key"


def relay_command(*args: str) -> list[str]:
    """The `relay` command line, run with the interpreter running the tests."""
    return [sys.executable, "-m", "relay", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any RELAY_* variable, plus `extra`; no user config folder either
    (relay would read ~/.config/relay/relay.toml where a test expects a first start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["XDG_CONFIG_HOME"] = os.path.join(os.devnull, "no-config")  # under a file: nothing can be there
    env.update(extra)
    return env


def toml_value(value: Any) -> str:
    """A TOML literal for the simple values these tests use (JSON strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # TOML's nan, inf and -inf, which JSON has no words for
    return json.dumps(value)


def write_config(path: Path, *, sources: dict[str, dict[str, Any]] | None = None, **top: Any) -> Path:
    """A relay.toml at `path`: a database beside it, the test API and secret keys, `demo` and `replicate`."""
    values: dict[str, Any] = {
        "database": f"sqlite:///{path.parent / 'relay.db'}",
        "secret_key": SECRET_KEY,
        "api_keys": [API_KEY],
        **top,
    }
    if sources is None:
        sources = {
            "demo": {"kind": "standard-webhooks", "secret": DEMO_SECRET},
            "replicate": {"kind": "replicate", "secret": REPLICATE_SECRET},
        }
    lines = [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
    for name, table in sources.items():
        lines += ["", f"[sources.{name}]", *(f"{key} = {toml_value(v)}" for key, v in table.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RelayProcess:
    """One `relay serve` subprocess and where its output goes."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def client(self, api_key: str | None = API_KEY, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client for this relay, with the API key as a bearer token unless None."""
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        kwargs.setdefault("timeout", 10)
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, **kwargs)

    async def ready(self, within: float = READY_WITHIN_S) -> None:
        """Wait until /healthz answers 200; fail at once, with its output, if the process exits."""

        async def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"relay exited with {self.proc.returncode} before it was ready:\n{self.stderr}"
                )
            try:
                async with httpx.AsyncClient(timeout=1) as client:
                    return (await client.get(f"{self.base_url}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, within=within)

    async def exited(self, within: float) -> int:
        """The exit code, once the process has ended (failing after `within` seconds)."""
        await wait_for(lambda: self.proc.poll() is not None, within=within)
        return self.proc.returncode

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def stop(self, within: float = 10.0) -> None:
        """SIGTERM, then check that the process shut down cleanly within `within` seconds."""
        self.proc.send_signal(signal.SIGTERM)
        code = await self.exited(within)
        assert code in CLEAN_STOP, f"exit status {code}:\n{self.stderr}"
        assert "Application shutdown complete" in self.stderr, self.stderr


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """Start `relay serve ARGS` (or another `command`) in a directory (tmp_path by default); every one is
    killed at teardown.

    Without `port`, `serve` gets a free port as `--port`; with it, the config or args put it there.
    """
    started: list[RelayProcess] = []

    def start(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        command: str = "serve",
    ) -> RelayProcess:
        argv = list(args)
        if port is None and command == "serve":
            port = free_port()
            argv += ["--port", str(port)]
        n = len(started)
        stdout_path, stderr_path = tmp_path / f"relay-{n}.stdout", tmp_path / f"relay-{n}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                relay_command(command, *argv),
                cwd=cwd or tmp_path,
                env=clean_env() if env is None else env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        process = RelayProcess(proc, host, port or 0, stdout_path, stderr_path)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGKILL)
            process.proc.wait(timeout=10)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short `relay` command to completion (bounded) and capture its output."""
    return subprocess.run(
        relay_command(*args),
        cwd=cwd,
        env=clean_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
