"""Fixtures of the example tests: a real relay on loopback whose webhook URLs point at itself, with a fal,
a Replicate and a RunPod source; fal's JWKS; a TLS certificate for a fake fal queue; running an example."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import (
    API_KEY,
    REPLICATE_SECRET,
    LiveRelay,
    free_port,
    make_settings,
    start_relay,
    wait_for,
)
from tests.e2e.conftest import clean_env
from tests.unit.providers.support import FIXTURE_KEY, JwksServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_WITHIN_S = 20.0  # a bound for a hung example, far above the second one takes


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    """fal's JWKS with the fixture key, served on 127.0.0.1."""
    async with JwksServer(FIXTURE_KEY) as server:
        yield server


@pytest.fixture
async def relay(tmp_path: Path, jwks: JwksServer) -> AsyncIterator[LiveRelay]:
    """relay served on 127.0.0.1, `public_url` its own address, so the URL it hands a provider reaches it."""
    port = free_port()
    settings = make_settings(
        tmp_path,
        public_url=f"http://127.0.0.1:{port}",
        sources={
            "fal": {"kind": "fal", "jwks_url": jwks.url},
            "replicate": {"kind": "replicate", "secret": REPLICATE_SECRET},
            "runpod": {"kind": "runpod"},
        },
    )
    async with start_relay(settings, port=port) as live:
        yield live


@dataclass(frozen=True)
class Tls:
    """A self-signed certificate for 127.0.0.1: the server's context, and the file a client trusts it from."""

    server: ssl.SSLContext
    ca_file: Path


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """fal_client only speaks HTTPS to its queue host, so the fake queue needs a certificate the example
    trusts (through SSL_CERT_FILE, which httpx reads)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True
        )  # digital_signature and key_cert_sign: the one certificate is both the leaf and its own root
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return Tls(server, cert_file)


@dataclass(frozen=True)
class Finished:
    """How an example run ended."""

    code: int
    stdout: str
    stderr: str


async def run_example(name: str, relay: LiveRelay, *args: str, **env: str) -> Finished:
    """`python examples/NAME.py ARGS` with RELAY_URL and RELAY_API_KEY for `relay` and `env` set, as a user
    runs it; the relay serves in this event loop meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        *args,
        env=clean_env(RELAY_URL=relay.base_url, RELAY_API_KEY=API_KEY, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), EXAMPLE_WITHIN_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Finished(proc.returncode, stdout.decode(), stderr.decode())


async def post_once_waited_on(relay: LiveRelay, url: str, body: bytes, headers: dict[str, str]) -> None:
    """Be the provider once the example is in `wait()` (a long-poll is held), so the result is what ends its
    wait: POST the callback to `url`, as given to the provider, and check relay took it."""
    await wait_for(lambda: relay.services.hub.count > 0, within=EXAMPLE_WITHIN_S)
    async with httpx.AsyncClient(timeout=10) as provider:
        answer = await provider.post(url, content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["accepted"] is True, answer.text
