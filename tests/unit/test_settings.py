"""Settings: defaults, the TOML file, environment overrides, `*_env` forms and errors that name the key."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from relay.errors import ConfigError
from relay.first_run import write_first_run_config
from relay.providers import KINDS, Provider
from relay.settings import Settings, load_settings
from relay.tokens import Tokens

SECRET_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_B = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

FULL_TOML = f"""
database = "sqlite:///custom.db"
public_url = "https://relay.example.com"
secret_key = "file-secret-key"
api_keys = ["file-api-key-1", "file-api-key-2"]
signing_secret = "{SECRET_B}"
sweep_interval_s = 2.5
max_body_bytes = 1048576
allow_private_destinations = true

[sources.replicate]
kind = "replicate"
secret = "{SECRET_A}"
timeout_s = 600
tolerance_s = 120

[sources.mine]
kind = "standard-webhooks"
secret = "{SECRET_B}"
job_id_pointer = "/data/id"
status_pointer = "/data/state"
status_map = {{ done = "succeeded" }}
"""


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from `overrides` alone, with a secret key unless given, and an empty environment."""
    return load_settings(None, environ=environ or {}, overrides={"secret_key": "k", **overrides})


def refused(match: str, **overrides: Any) -> ConfigError:
    """Assert loading `overrides` is a ConfigError whose message starts with the offending key."""
    with pytest.raises(ConfigError) as info:
        load(**overrides)
    assert str(info.value).startswith(match), str(info.value)
    return info.value


def source(**table: Any) -> dict[str, Any]:
    return {"sources": {"mine": {"kind": "standard-webhooks", "secret": SECRET_A, **table}}}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(FULL_TOML)
    return path


def test_defaults() -> None:
    """With only a secret key, every other setting has its documented default."""
    settings = load()
    assert settings.database == "sqlite:///relay.db"
    assert settings.public_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.api_keys == ()
    assert settings.signing_secret is None
    assert settings.sweep_interval_s == 5.0
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.allow_private_destinations is False
    assert dict(settings.sources) == {}
    assert settings.base_url == "http://127.0.0.1:8000"


def test_a_secret_key_is_required() -> None:
    """Without secret_key (file, env var or RELAY_SECRET_KEY) the settings are refused, naming the key."""
    with pytest.raises(ConfigError, match=r"^secret_key:"):
        load_settings(None, environ={})


def test_file_with_every_contract_key(config_file: Path) -> None:
    """Every key of API.md's example config is read into the settings."""
    settings = load_settings(config_file, environ={})
    assert settings.database == "sqlite:///custom.db"
    assert settings.public_url == "https://relay.example.com"
    assert settings.secret_key == "file-secret-key"
    assert settings.api_keys == ("file-api-key-1", "file-api-key-2")
    assert settings.signing_secret == SECRET_B
    assert settings.sweep_interval_s == 2.5
    assert settings.max_body_bytes == 1048576
    assert settings.allow_private_destinations is True
    assert set(settings.sources) == {"replicate", "mine"}
    replicate = settings.sources["replicate"]
    assert (replicate.kind, replicate.secrets) == ("replicate", (SECRET_A,))
    assert (replicate.timeout_s, replicate.tolerance_s) == (600.0, 120.0)
    mine = settings.sources["mine"]
    assert (mine.kind, mine.secrets) == ("standard-webhooks", (SECRET_B,))
    assert mine.options["job_id_pointer"] == "/data/id"
    assert mine.options["status_pointer"] == "/data/state"
    assert mine.options["status_map"] == {"done": "succeeded"}
    assert (mine.timeout_s, mine.tolerance_s) == (900.0, 300.0)


def test_relay_config_names_the_file(config_file: Path) -> None:
    """`RELAY_CONFIG` names the file when no path is given; an explicit path wins over it."""
    settings = load_settings(None, environ={"RELAY_CONFIG": str(config_file)})
    assert settings.secret_key == "file-secret-key"
    other = config_file.with_name("other.toml")
    other.write_text('secret_key = "other-key"\n')
    assert load_settings(other, environ={"RELAY_CONFIG": str(config_file)}).secret_key == "other-key"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is refused, naming the path."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_environment_overrides_the_file(config_file: Path) -> None:
    """RELAY_DATABASE_URL, RELAY_SECRET_KEY and RELAY_API_KEYS (comma-separated) beat the file."""
    environ = {
        "RELAY_DATABASE_URL": "sqlite:///from-env.db",
        "RELAY_SECRET_KEY": "env-secret-key",
        "RELAY_API_KEYS": " key-1, key-2,,key-3 ",
    }
    settings = load_settings(config_file, environ=environ)
    assert settings.database == "sqlite:///from-env.db"
    assert settings.secret_key == "env-secret-key"
    assert settings.api_keys == ("key-1", "key-2", "key-3")
    assert settings.public_url == "https://relay.example.com"


def test_environment_overrides_an_env_form_in_the_file(tmp_path: Path) -> None:
    """RELAY_SECRET_KEY and RELAY_API_KEYS win over `*_env` keys in the file, even when those are unset."""
    path = tmp_path / "relay.toml"
    path.write_text('secret_key_env = "UNSET_A"\napi_keys_env = "UNSET_B"\n')
    settings = load_settings(path, environ={"RELAY_SECRET_KEY": "s", "RELAY_API_KEYS": "a"})
    assert (settings.secret_key, settings.api_keys) == ("s", ("a",))


def test_overrides_beat_the_environment() -> None:
    """Explicit overrides (command-line options) come last."""
    settings = load_settings(
        None,
        environ={"RELAY_DATABASE_URL": "sqlite:///env.db", "RELAY_SECRET_KEY": "k"},
        overrides={"database": "sqlite:///cli.db", "port": 9000},
    )
    assert (settings.database, settings.port) == ("sqlite:///cli.db", 9000)


def test_env_forms_read_the_named_variables() -> None:
    """secret_key_env, api_keys_env, signing_secret_env and a source's secret_env read their variables."""
    environ = {"SK": "env-sk", "KEYS": "a,b", "SIGN": SECRET_B, "SRC": SECRET_A}
    settings = load_settings(
        None,
        environ=environ,
        overrides={
            "secret_key_env": "SK",
            "api_keys_env": "KEYS",
            "signing_secret_env": "SIGN",
            "sources": {"mine": {"kind": "replicate", "secret_env": "SRC"}},
        },
    )
    assert settings.secret_key == "env-sk"
    assert settings.api_keys == ("a", "b")
    assert settings.signing_secret == SECRET_B
    assert settings.sources["mine"].secrets == (SECRET_A,)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"secret_key_env": "MISSING_VAR"}, "secret_key_env:"),
        ({"secret_key": "k", "api_keys_env": "MISSING_VAR"}, "api_keys_env:"),
        ({"secret_key": "k", "signing_secret_env": "MISSING_VAR"}, "signing_secret_env:"),
        (
            {"secret_key": "k", "sources": {"mine": {"kind": "replicate", "secret_env": "MISSING_VAR"}}},
            "sources.mine.secret_env:",
        ),
    ],
)
def test_env_form_naming_a_missing_variable_is_refused(overrides: dict[str, Any], key: str) -> None:
    """An `*_env` key naming an unset variable is refused, naming the key and the variable."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={}, overrides=overrides)
    assert str(info.value).startswith(key)
    assert "MISSING_VAR" in str(info.value)


def test_a_key_and_its_env_form_together_are_refused() -> None:
    """Setting both `secret` and `secret_env` is ambiguous and refused, naming the key."""
    refused("sources.mine.secret:", **source(secret_env="X"))


def test_secret_may_be_a_list() -> None:
    """A source's `secret` may be a list (rotation); each becomes a key."""
    settings = load(**source(secret=[SECRET_A, SECRET_B]))
    assert settings.sources["mine"].secrets == (SECRET_A, SECRET_B)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"databse": "sqlite:///x.db"}, "databse:"),
        (source(colour="blue"), "sources.mine.colour:"),
        (source(kind="carrier-pigeon"), "sources.mine.kind:"),
        ({"sources": {"mine": {"secret": SECRET_A}}}, "sources.mine.kind:"),
        ({"sources": {"mine": {"kind": "replicate"}}}, "sources.mine.secret:"),
        ({"sources": {"mine": {"kind": "standard-webhooks", "secret": []}}}, "sources.mine.secret:"),
        (source(secret="whsec_not base64!"), "sources.mine.secret:"),
        (source(secret=[SECRET_A, 5]), "sources.mine.secret:"),
        ({"max_body_bytes": "x"}, "max_body_bytes:"),
        ({"max_body_bytes": 1.5}, "max_body_bytes:"),
        ({"max_body_bytes": 0}, "max_body_bytes:"),
        ({"sweep_interval_s": True}, "sweep_interval_s:"),
        ({"sweep_interval_s": -1}, "sweep_interval_s:"),
        ({"allow_private_destinations": "yes"}, "allow_private_destinations:"),
        ({"port": "8000"}, "port:"),
        ({"port": 70000}, "port:"),
        ({"max_waiters": 0}, "max_waiters:"),
        ({"public_url": 5}, "public_url:"),
        ({"api_keys": [1]}, "api_keys:"),
        ({"signing_secret": "whsec_not base64!"}, "signing_secret:"),
        ({"sqlite_synchronous": "off"}, "sqlite_synchronous:"),
        (source(timeout_s="x"), "sources.mine.timeout_s:"),
        (source(tolerance_s=0), "sources.mine.tolerance_s:"),
        (source(status_map={"done": "finished"}), "sources.mine.status_map.done:"),
        (source(status_map="done"), "sources.mine.status_map:"),
        (source(job_id_pointer="id"), "sources.mine.job_id_pointer:"),
        (source(status_pointer=5), "sources.mine.status_pointer:"),
        ({"sources": {"mine": "replicate"}}, "sources.mine:"),
        ({"sources": {"bad/name": {"kind": "replicate", "secret": SECRET_A}}}, "sources.bad/name:"),
        ({"sources": "replicate"}, "sources:"),
        # Values that passed the checks before and then broke relay at run time.
        ({"api_keys": [""]}, "api_keys:"),
        ({"api_keys": ["good", "   "]}, "api_keys:"),
        ({"api_keys": [" padded "]}, "api_keys:"),
        ({"sweep_interval_s": math.nan}, "sweep_interval_s:"),
        ({"sweep_interval_s": math.inf}, "sweep_interval_s:"),
        ({"max_wait_s": math.inf}, "max_wait_s:"),
        ({"retry_jitter": math.nan}, "retry_jitter:"),
        ({"delivery_timeout_s": -math.inf}, "delivery_timeout_s:"),
        ({"retry_schedule_s": [5, math.nan]}, "retry_schedule_s:"),
        ({"retry_schedule_s": [5, 1e308]}, "retry_schedule_s:"),
        (source(timeout_s=math.nan), "sources.mine.timeout_s:"),
        (source(timeout_s=1e308), "sources.mine.timeout_s:"),
        (source(max_deadline_s=math.inf), "sources.mine.max_deadline_s:"),
        (source(reconcile_after_s=math.nan), "sources.mine.reconcile_after_s:"),
    ],
)
def test_errors_name_the_key(overrides: dict[str, Any], key: str) -> None:
    """Each invalid setting is a ConfigError whose message starts with the offending key."""
    refused(key, **overrides)


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not TOML is refused, naming the file and the place of the error."""
    path = tmp_path / "relay.toml"
    path.write_text('secret_key = "k"\nmax_body_bytes = = 3\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)
    assert "line 2" in str(info.value)


def test_wrong_type_in_the_file_names_the_key(tmp_path: Path) -> None:
    """`max_body_bytes = "x"` in a file is refused, naming max_body_bytes."""
    path = tmp_path / "relay.toml"
    path.write_text('secret_key = "k"\nmax_body_bytes = "x"\n')
    with pytest.raises(ConfigError, match=r"^max_body_bytes:"):
        load_settings(path, environ={})


def test_repr_holds_no_secret(config_file: Path) -> None:
    """`repr(settings)` shows no secret key, API key, signing secret, source secret or API token."""
    settings = load_settings(
        config_file,
        environ={"TOKEN": "api-token-value"},
        overrides={
            "sources": {
                "mine": {"kind": "replicate", "secret": [SECRET_A, SECRET_B], "api_token_env": "TOKEN"}
            }
        },
    )
    text = repr(settings)
    for secret in (
        "file-secret-key",
        "file-api-key-1",
        "file-api-key-2",
        SECRET_A,
        SECRET_B,
        SECRET_A.removeprefix("whsec_"),
        SECRET_B.removeprefix("whsec_"),
        "api-token-value",
    ):
        assert secret not in text
    assert "sqlite:///custom.db" in text


def test_first_run_config_is_private_and_loadable(tmp_path: Path) -> None:
    """The first-run file is 0600 and loads with the secret key, API key and demo source it reports."""
    path = tmp_path / "relay.toml"
    created = write_first_run_config(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    settings = load_settings(path, environ={})
    assert settings.secret_key == created["secret_key"]
    assert settings.api_keys == (created["api_key"],)
    assert settings.sources["demo"].kind == "standard-webhooks"
    assert settings.sources["demo"].secrets == (created["demo_secret"],)


def test_first_run_config_keeps_the_address_it_was_started_on(tmp_path: Path) -> None:
    """A --host/--port given on the first start is written, so later commands print the same URLs."""
    path = tmp_path / "relay.toml"
    write_first_run_config(path, host="0.0.0.0", port=9000)
    settings = load_settings(path, environ={})
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.base_url == "http://0.0.0.0:9000"
    plain = tmp_path / "plain.toml"
    write_first_run_config(plain)
    assert (load_settings(plain, environ={}).host, load_settings(plain, environ={}).port) == (
        "127.0.0.1",
        8000,
    )


def test_first_run_config_never_overwrites(tmp_path: Path) -> None:
    """Writing the first-run config over an existing file fails and leaves the file as it was."""
    path = tmp_path / "relay.toml"
    path.write_text("# mine\n")
    with pytest.raises(FileExistsError):
        write_first_run_config(path)
    assert path.read_text() == "# mine\n"


def test_first_run_configs_differ(tmp_path: Path) -> None:
    """Two first runs make different secrets."""
    one = write_first_run_config(tmp_path / "one.toml")
    two = write_first_run_config(tmp_path / "two.toml")
    assert all(one[key] != two[key] for key in one)


class _Unsigned(Provider):
    kind = "unsigned-test"
    options: ClassVar[Mapping[str, Any]] = {}
    signed = False


def test_webhook_url_of_a_signed_source() -> None:
    """A signed source's URL is `public_url/hooks/NAME`, without a trailing slash doubling."""
    tokens = Tokens("k")
    settings = load(public_url="https://relay.example.com/", **source())
    assert settings.webhook_url("mine", tokens) == "https://relay.example.com/hooks/mine"
    local = load(port=9001, **source())
    assert local.webhook_url("mine", tokens) == "http://127.0.0.1:9001/hooks/mine"


def test_webhook_url_of_an_unsigned_source_carries_its_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsigned source's URL ends in a token that authenticates that source."""
    monkeypatch.setitem(KINDS, _Unsigned.kind, _Unsigned)
    tokens = Tokens("k")
    settings = load(public_url="https://relay.example.com", sources={"pod": {"kind": _Unsigned.kind}})
    url = settings.webhook_url("pod", tokens)
    prefix = "https://relay.example.com/hooks/pod/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert "/" not in token
    assert tokens.hook_token_valid("pod", token)
