"""deploy/Dockerfile: hadolint, and what a linter cannot know (relay's commands, port, health path, user)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.deploy_files import (
    DEPLOY,
    RELAY_DRAIN_S,
    relay_commands,
    run,
    serve_host,
    serve_port,
    served_get_paths,
    tool,
)

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY.parent / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and the rest of its logical line."""

    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """The instructions of `path`, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [Instruction(*[*text.split(None, 1), ""][:2]) for text in logical]


def runtime_stage(path: Path) -> list[Instruction]:
    """The instructions of the last stage (the image that runs)."""
    parsed = instructions(path)
    last_from = max(i for i, ins in enumerate(parsed) if ins.keyword.upper() == "FROM")
    return parsed[last_from:]


def the(stage: list[Instruction], keyword: str) -> Instruction:
    """The last `keyword` instruction of `stage` (the one that takes effect)."""
    found = [ins for ins in stage if ins.keyword.upper() == keyword]
    assert found, f"no {keyword} in the runtime stage"
    return found[-1]


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; fails on the shell form, whose /bin/sh would take SIGTERM."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_hadolint_passes() -> None:
    """hadolint finds nothing to warn about."""
    result = run(tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_wheel_into_python_slim() -> None:
    """A build stage makes the wheels; the runtime stage, python:3.11-slim, takes them from it."""
    parsed = instructions(DOCKERFILE)
    args = {
        m[1]: m[2] for ins in parsed if (m := re.fullmatch(r"(\w+)=(\S+)", ins.args)) and ins.keyword == "ARG"
    }
    froms = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], ins.args).split()
        for ins in parsed
        if ins.keyword == "FROM"
    ]
    assert len(froms) >= 2
    build_stage = froms[0][2]
    assert froms[-1][0] == "python:3.11-slim"
    assert any("pip wheel" in ins.args for ins in parsed if ins.keyword == "RUN")
    assert any(f"from={build_stage}" in ins.args for ins in runtime_stage(DOCKERFILE) if ins.keyword == "RUN")


def test_runs_as_a_numeric_non_root_user() -> None:
    """The image's user is not root, and numeric so Kubernetes' runAsNonRoot can check it."""
    user, _, group = the(runtime_stage(DOCKERFILE), "USER").args.partition(":")
    assert user.isdigit() and int(user) != 0, user
    assert not group or (group.isdigit() and int(group) != 0), group


def test_entrypoint_is_relay_and_serves_on_all_interfaces() -> None:
    """Exec-form ENTRYPOINT `relay` and CMD `serve` on 0.0.0.0: relay is PID 1, gets SIGTERM and drains."""
    stage = runtime_stage(DOCKERFILE)
    entrypoint = exec_form(the(stage, "ENTRYPOINT").args)
    command = exec_form(the(stage, "CMD").args)
    assert entrypoint == ["relay"]
    assert command[0] in relay_commands() and command[0] == "serve"
    assert serve_host(command) == "0.0.0.0"
    assert str(serve_port(command)) in the(stage, "EXPOSE").args.split()
    assert the(stage, "STOPSIGNAL").args in ("SIGTERM", "15")


def test_healthcheck_asks_relay_healthz_with_python() -> None:
    """HEALTHCHECK runs Python (slim has no curl) against /healthz on the port relay serves."""
    stage = runtime_stage(DOCKERFILE)
    healthcheck = the(stage, "HEALTHCHECK").args
    options, _, command = healthcheck.partition("CMD ")
    argv = exec_form(command)
    assert argv[0] == "python"
    url = re.search(r"http://(127\.0\.0\.1|localhost):(\d+)(/\w+)", " ".join(argv))
    assert url is not None, argv
    assert int(url[2]) == serve_port(exec_form(the(stage, "CMD").args))
    assert url[3] == "/healthz" and url[3] in served_get_paths()
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout is not None and int(timeout[1]) < RELAY_DRAIN_S


def test_database_directory_is_a_volume_owned_by_the_user() -> None:
    """/var/lib/relay is the working directory (relay.db, the first-start relay.toml) and a volume."""
    stage = runtime_stage(DOCKERFILE)
    assert the(stage, "WORKDIR").args == "/var/lib/relay"
    assert "/var/lib/relay" in exec_form(the(stage, "VOLUME").args)
    assert any("chown" in ins.args and "/var/lib/relay" in ins.args for ins in stage if ins.keyword == "RUN")


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    """The root .dockerignore excludes everything but the files the build stage copies (no .venv, .git,
    relay.toml, relay.db)."""
    lines = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = {
        src.rstrip("/")
        for ins in instructions(DOCKERFILE)
        if ins.keyword == "COPY" and "--from" not in ins.args
        for src in ins.args.split()[:-1]
    }
    assert copied == allowed
    for sent in allowed:
        assert (DEPLOY.parent / sent).exists(), sent
