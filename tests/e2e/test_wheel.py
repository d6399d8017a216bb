"""The package as people get it from an index: the sdist and the wheel that `python -m build` makes pass
`twine check`, hold every file relay reads at run time, and the wheel, installed into a fresh virtual
environment with its declared dependencies only, serves a first start from an empty folder."""

from __future__ import annotations

import email.parser
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import orjson
import pytest

from relay import __version__
from tests.conftest import free_port, signed_headers
from tests.e2e.conftest import RelayProcess, clean_env

ROOT = Path(__file__).resolve().parents[2]
# The first start's banner: the keys it wrote, shown once.
_SHOWN = re.compile(
    r"API key:\s+(?P<api_key>\S+)\n"
    r"\s+demo source webhook:\s+(?P<url>\S+)\n"
    r"\s+demo source secret:\s+(?P<secret>\S+)"
)


def _run(
    *argv: str | Path, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion (bounded), failing with its output when it fails."""
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_outside_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _outside_env(**extra: str) -> dict[str, str]:
    """No RELAY_* and no PYTHONPATH: what runs sees the installed package, never this checkout."""
    env = clean_env(**extra)
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from this checkout (the wheel built from the sdist, as pip would)."""
    out, source = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("source")
    # From a copy: setuptools writes its egg-info and sdist folder beside the sources, and two builds in one
    # folder (two test workers) would trip over each other's.
    for name in ("pyproject.toml", "README.md", "LICENSE", "relay"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name)
    _run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


def _one(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def _package_files() -> set[str]:
    """Every file of the source tree's `relay` package, as a path inside the wheel (bytecode left out)."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "relay").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_distributions_pass_twine_and_hold_every_package_file(dist: Path) -> None:
    """`twine check --strict` passes on both; each holds every file under relay/ (SQL migrations, the OpenAPI
    document, py.typed), and the wheel's metadata names the distribution and relay's own version."""
    sdist, wheel = _one(dist, "*.tar.gz"), _one(dist, "*.whl")
    _run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    expected = _package_files()
    assert {"relay/openapi.yaml", "relay/store/sqlite/migrations/0001.sql"} <= expected

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_path,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_path).decode())
    assert expected - names == set()
    assert metadata["Name"] == "callback-relay"
    assert metadata["Version"] == __version__

    with tarfile.open(sdist) as archive:
        top = f"callback_relay-{__version__}/"
        in_sdist = {n.removeprefix(top) for n in archive.getnames()}
    assert expected - in_sdist == set()
    assert "LICENSE" in in_sdist


@pytest.fixture
def venv(dist: Path, tmp_path: Path) -> Path:
    """A fresh virtual environment with the wheel and the dependencies it declares, nothing else."""
    home = tmp_path / "venv"
    # Without its own pip (seconds saved): this interpreter's pip installs into it.
    _run(sys.executable, "-m", "venv", "--without-pip", home)
    python = home / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", _one(dist, "*.whl"))
    return home


def _serve(venv: Path, home: Path, logs: Path) -> RelayProcess:
    """`relay serve` from `venv` in `home` on a free port, its output in `logs`."""
    port = free_port()
    stdout_path, stderr_path = logs / "serve.stdout", logs / "serve.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [venv / "bin" / "relay", "serve", "--port", str(port)],
            cwd=home,
            env=_outside_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return RelayProcess(proc, "127.0.0.1", port, stdout_path, stderr_path)


def _check_config(venv: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`relay check-config` from `venv` in `home`, with `env` over the environment; not checked."""
    return subprocess.run(
        [venv / "bin" / "relay", "check-config"],
        cwd=home,
        env=_outside_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_installed_wheel_serves_a_first_start(venv: Path, tmp_path: Path) -> None:
    """From an empty folder the installed `relay serve` writes its config, takes a signed callback, answers
    the job and its OpenAPI document (shipped data files), and stops cleanly on SIGTERM; without the
    `postgres` extra a postgresql:// database is refused up front, naming the extra to install."""
    where = _run(venv / "bin" / "python", "-c", "import relay; print(relay.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    version = _run(venv / "bin" / "relay", "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"relay, version {__version__}"

    home = tmp_path / "empty"
    home.mkdir()
    relay = _serve(venv, home, tmp_path)
    try:
        await relay.ready()
        shown = _SHOWN.search(relay.stderr)
        assert shown is not None, relay.stderr
        body = orjson.dumps(
            {"id": "wheel-job", "status": "succeeded", "output": ["https://cdn.example/a.png"]}
        )
        async with httpx.AsyncClient(timeout=10) as client:
            posted = await client.post(
                shown["url"], content=body, headers=signed_headers(shown["secret"], body)
            )
        assert posted.status_code == 200, posted.text
        async with relay.client(shown["api_key"]) as client:
            job = (await client.get("/v1/jobs/demo/wheel-job")).json()
            openapi = (await client.get("/openapi.json")).json()
        assert job["status"] == "succeeded", job
        assert openapi["info"]["version"] == __version__
        await relay.stop()
    finally:
        if relay.proc.poll() is None:
            relay.proc.send_signal(signal.SIGKILL)
        relay.proc.wait(timeout=10)

    # The wheel alone has no PostgreSQL driver (asyncpg): say which extra, under the distribution's name.
    assert _check_config(venv, home).returncode == 0
    refused = _check_config(venv, home, RELAY_DATABASE_URL="postgresql://relay@127.0.0.1:1/relay")
    assert refused.returncode != 0, refused.stdout
    assert "pip install 'callback-relay[postgres]'" in refused.stderr, refused.stderr
