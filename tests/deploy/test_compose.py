"""deploy/compose.yaml: the compose-spec schema, and the order, health checks and config relay needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.deploy.deploy_files import (
    DEPLOY,
    RELAY_DRAIN_S,
    env_file,
    load_yaml,
    relay_commands,
    run,
    serve_host,
    serve_port,
    served_get_paths,
    settings_from,
    tool,
)

COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "env.example"
SECRET_VARIABLES = ("RELAY_SECRET_KEY", "RELAY_API_KEYS", "RELAY_SIGNING_SECRET", "DEMO_SOURCE_SECRET")


def services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return services


def relay_services() -> dict[str, Any]:
    """The services running the relay image's `relay serve` (the load balancer's upstreams)."""
    return {name: s for name, s in services().items() if s.get("command", [""])[0] == "serve"}


def seconds(duration: str) -> float:
    """A compose duration such as `30s` or `1m30s` in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts is not None and duration, duration
    return int(parts[1] or 0) * 60 + int(parts[2] or 0)


def interpolated(value: str, environ: dict[str, str]) -> str:
    """`value` with compose's ${VAR}, ${VAR:-default} and ${VAR:?error} filled from `environ`."""

    def fill(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2], match[3]
        if environ.get(name):
            return environ[name]
        assert op != ":?", f"{name} is required: {arg}"
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", fill, value)


def test_compose_file_matches_the_compose_spec() -> None:
    """The file validates against the compose-spec JSON schema (check-jsonschema's vendored copy)."""
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_relays_each_serving_on_all_interfaces() -> None:
    """Two `relay serve` instances, listening on 0.0.0.0 inside their containers."""
    relays = relay_services()
    assert len(relays) == 2
    for service in relays.values():
        assert serve_host(service["command"]) == "0.0.0.0"


def test_every_command_is_a_relay_command() -> None:
    """Each service built from relay's image runs a subcommand `relay --help` lists."""
    for name, service in services().items():
        if "build" in service:
            assert service["command"][0] in relay_commands(), name


def test_relay_healthchecks_ask_healthz_on_the_served_port() -> None:
    """Each relay's health check asks /healthz on the port its `serve` listens on, within relay's drain."""
    for name, service in relay_services().items():
        check = " ".join(service["healthcheck"]["test"])
        url = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\w+)", check)
        assert url is not None, name
        assert int(url[1]) == serve_port(service["command"]), name
        assert url[2] == "/healthz" and url[2] in served_get_paths()
        assert seconds(service["stop_grace_period"]) > RELAY_DRAIN_S, name


def test_start_order_is_health_gated() -> None:
    """postgres healthy, then migrate once to completion, then the relays healthy, then the load balancer."""
    svc = services()
    assert svc["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    migrate = svc["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, relay in relay_services().items():
        assert relay["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert relay["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    balancer = svc["caddy"]
    assert {name: dep["condition"] for name, dep in balancer["depends_on"].items()} == {
        name: "service_healthy" for name in relay_services()
    }


def test_load_balancer_sends_to_every_relay() -> None:
    """Caddy's upstreams are exactly the relay services, on the port they serve."""
    balancer = services()["caddy"]
    upstreams = balancer["environment"]["RELAY_UPSTREAMS"].split()
    assert sorted(upstreams) == sorted(
        f"{name}:{serve_port(s['command'])}" for name, s in relay_services().items()
    )
    mounts = {m.split(":")[1]: m.split(":")[0] for m in balancer["volumes"]}
    assert (DEPLOY / mounts["/etc/caddy/Caddyfile"]).is_file()


def test_secrets_come_from_the_environment_file() -> None:
    """No secret is written in compose.yaml: each is a required ${...} filled from deploy/.env."""
    svc = services()
    for name in ("migrate", *relay_services()):
        environment = svc[name]["environment"]
        for variable in SECRET_VARIABLES:
            assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", environment[variable]), (name, variable)
        assert "${POSTGRES_PASSWORD:?" in environment["RELAY_DATABASE_URL"]
    assert re.fullmatch(
        r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", svc["postgres"]["environment"]["POSTGRES_PASSWORD"]
    )
    assert ".env" in (DEPLOY.parent / ".gitignore").read_text().split()


def test_relays_start_with_the_example_environment(tmp_path: Path) -> None:
    """relay's own settings loader takes the mounted config with the environment compose gives the relays
    from env.example: a missing variable, a bad secret or an unknown key would stop them at start."""
    example = env_file(ENV_EXAMPLE)
    relay = next(iter(relay_services().values()))
    environ = {key: interpolated(str(value), example) for key, value in relay["environment"].items()}
    mounts = {m.split(":")[1]: m.split(":")[0] for m in relay["volumes"]}
    config = DEPLOY / mounts[environ["RELAY_CONFIG"]]
    settings = settings_from(config.read_text(), environ, tmp_path)
    assert settings.database.startswith("postgresql://relay:") and "@postgres:5432/relay" in settings.database
    assert settings.api_keys == (example["RELAY_API_KEYS"],)
    assert settings.signing_secret == example["RELAY_SIGNING_SECRET"]
    assert "demo" in settings.sources
