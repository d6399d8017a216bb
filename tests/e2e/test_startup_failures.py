"""Start-up failures of the real `relay serve`, `worker`, `migrate` and `check-config` commands: one line on
stderr naming the problem and the fix, exit status 2, no traceback."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import clean_env, run_cli, write_config

ALL = ("serve", "worker", "migrate", "check-config")
# A SQLite database is refused by `relay worker` before it is opened (one process writes SQLite).
ON_SQLITE = ("serve", "migrate", "check-config")
PASSWORD = "pg-password-in-the-url"


@dataclass(frozen=True)
class Failure:
    """A broken start: the config it comes from, the commands it stops, and what their one line must say."""

    config: Callable[[Path], Path]
    commands: tuple[str, ...]
    named: tuple[str, ...]


def _database(url: Callable[[Path], str]) -> Callable[[Path], Path]:
    return lambda tmp: write_config(tmp / "relay.toml", database=url(tmp), port=0)


def _top(**keys: Any) -> Callable[[Path], Path]:
    return lambda tmp: write_config(tmp / "relay.toml", port=0, **keys)


def _text(text: str) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        path = tmp / "relay.toml"
        path.write_text(text)
        return path

    return write


FAILURES = {
    "database folder missing": Failure(
        _database(lambda tmp: f"sqlite:///{tmp}/absent/relay.db"),
        ON_SQLITE,
        ("absent does not exist", "mkdir -p", "/absent"),
    ),
    "database folder not writable": Failure(
        # Nobody may create files in /proc, root included (who may write any ordinary folder).
        _database(lambda tmp: "sqlite:////proc/relay.db"),
        ON_SQLITE,
        ("cannot open /proc/relay.db", "writable"),
    ),
    "database is a folder": Failure(
        _database(lambda tmp: f"sqlite:///{tmp}"), ON_SQLITE, ("is a folder", "set database to a file name")
    ),
    "unsupported database scheme": Failure(
        _database(lambda tmp: "mysql://relay@db.example/relay"),
        ALL,
        ("unsupported database scheme 'mysql'", "use sqlite:///relay.db", "postgresql://"),
    ),
    "PostgreSQL unreachable": Failure(
        _database(lambda tmp: f"postgresql://relay:{PASSWORD}@127.0.0.1:{free_port()}/relay"),
        ALL,
        ("cannot connect to PostgreSQL at 127.0.0.1:", "start PostgreSQL", "fix the host and port"),
    ),
    # Every command reads its config through one function: two commands each, all four for a bad value.
    "TOML syntax": Failure(
        _text('secret_key = "k"\nport = = 8000\n'),
        ("serve", "check-config"),
        ("is not valid TOML", "line 2", "fix it"),
    ),
    "unknown key": Failure(
        _top(sweep_intervl_s=5),
        ("worker", "migrate"),
        ("sweep_intervl_s: unknown config key", "did you mean 'sweep_interval_s'"),
    ),
    "bad value": Failure(
        _top(sweep_interval_s="often"), ALL, ("sweep_interval_s: expected float, got 'often'", "fix it")
    ),
}


def run_each(
    commands: tuple[str, ...], config: Path, cwd: Path
) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """Each command with `--config config`, run at once (each is a real `relay` process)."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        runs = {c: pool.submit(run_cli, c, "--config", str(config), cwd=cwd) for c in commands}
        for command, run in runs.items():
            yield command, run.result()


def assert_one_line(result: subprocess.CompletedProcess[str], named: tuple[str, ...]) -> str:
    """Exit status 2, nothing on stdout, and on stderr one `Error:` line holding every fragment of `named`."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in named:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_broken_start_is_one_line_and_exit_2(tmp_path: Path, failure: Failure) -> None:
    """Every command it stops says what is wrong and what to do in one line, and exits 2."""
    if "/proc/" in " ".join(failure.named) and not Path("/proc").is_dir():
        pytest.skip("no /proc: nowhere that refuses root a new file")
    config = failure.config(tmp_path)
    for command, result in run_each(failure.commands, config, tmp_path):
        line = assert_one_line(result, failure.named)
        assert PASSWORD not in line, command
    assert not (tmp_path / "absent").exists()  # nothing was made on the way


def test_a_bad_environment_value_names_its_variable(tmp_path: Path) -> None:
    """A value from RELAY_DATABASE_URL that cannot be used: the line names the variable beside the file."""
    config = write_config(tmp_path / "relay.toml")
    result = run_cli(
        "check-config", "--config", str(config), cwd=tmp_path, env=clean_env(RELAY_DATABASE_URL="mysql://x/y")
    )
    assert_one_line(result, ("unsupported database scheme 'mysql'", "RELAY_DATABASE_URL", str(config)))


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_one_line(tmp_path: Path, taken_port: int) -> None:
    """`relay serve` on a port another program listens on says so before it opens anything."""
    config = write_config(tmp_path / "relay.toml", database=f"sqlite:///{tmp_path}/data/relay.db")
    result = run_cli("serve", "--config", str(config), "--port", str(taken_port), cwd=tmp_path)
    assert_one_line(result, (f"cannot listen on 127.0.0.1:{taken_port}", "in use", "--port"))
    assert not (tmp_path / "data").exists()


def test_a_failed_first_start_leaves_no_config(tmp_path: Path, taken_port: int) -> None:
    """A first start (no config anywhere) on a port in use fails in one line and writes no relay.toml, so the
    next start is a first start again, with the keys shown."""
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    result = run_cli("serve", "--port", str(taken_port), cwd=tmp_path, env=env)
    assert_one_line(result, (f"port {taken_port} is in use",))
    assert not (tmp_path / "relay.toml").exists()
